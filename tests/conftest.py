"""Skips tests whose resource is missing, saying which and why; everything else runs."""

from __future__ import annotations

from pathlib import Path

import pytest
from support.resources import RESOURCE_CHECKS

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        for resource, check in RESOURCE_CHECKS.items():
            if item.get_closest_marker(resource) is not None:
                reason = check()
                if reason is not None:
                    item.add_marker(pytest.mark.skip(reason=f"[{resource}] {reason}"))
                    break


@pytest.fixture
def shared_data() -> Path:
    """The public data folder beside the checkout (`../shared/data`); skips when it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip("../shared/data is absent (it exists for developers and CI, not for users)")
    return SHARED_DATA
