"""A GPU that is not there, for tests of what a run chooses on one: `torch.cuda` answers as a machine with a GPU of
a given generation would (nothing runs on it)."""

from __future__ import annotations

import contextlib
from typing import Any

import pytest


def fake_gpu(monkeypatch: pytest.MonkeyPatch, native_bf16: bool) -> None:
    """Makes `torch.cuda` report one visible GPU that computes in bfloat16 natively (`native_bf16`: an A100 or later)
    or only by emulation (a V100 or T4: `is_bf16_supported()` is true there, unless emulation is left out)."""
    import torch

    def is_bf16_supported(including_emulation: bool = True) -> bool:
        return native_bf16 or including_emulation

    def device(where: Any) -> contextlib.AbstractContextManager[None]:
        return contextlib.nullcontext()

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", is_bf16_supported)
    monkeypatch.setattr(torch.cuda, "device", device)
