"""Which external resources (Docker engine, Chromium, GPU, vLLM, Ray) this machine has, and why not when it lacks
one."""

from __future__ import annotations

import functools
import importlib.util
import os
import shutil
from pathlib import Path


@functools.cache
def _docker_reason() -> str | None:
    if importlib.util.find_spec("docker") is None:
        return "the docker SDK is not installed (pip install 'reflectgym[docker]')"
    import docker

    try:
        docker.from_env(timeout=5).ping()
    except Exception as error:  # any failure to reach the engine means: no engine here
        return f"no Docker engine answers ({type(error).__name__}); `make test` starts dockerd when run as root"
    return None


@functools.cache
def _browser_reason() -> str | None:
    if importlib.util.find_spec("playwright") is None:
        return "playwright is not installed (pip install 'reflectgym[web]')"
    if not (os.environ.get("REFLECTGYM_CHROMIUM") or shutil.which("chromium") or _playwright_browser_present()):
        return "no Chromium found (Debian: apt-get install chromium; elsewhere: playwright install chromium)"
    return None


def _playwright_browser_present() -> bool:
    cache = Path(os.environ.get("PLAYWRIGHT_BROWSERS_PATH", Path.home() / ".cache" / "ms-playwright"))
    return cache.exists() and any(cache.glob("chromium*"))


@functools.cache
def _gpu_reason() -> str | None:
    if importlib.util.find_spec("torch") is None:
        return "torch is not installed"
    import torch

    return None if torch.cuda.is_available() else "no CUDA GPU on this machine"


@functools.cache
def _vllm_reason() -> str | None:
    gpu = _gpu_reason()
    if gpu is not None:
        return f"vLLM needs a GPU: {gpu}"
    if importlib.util.find_spec("vllm") is None:
        return "vLLM is not installed (pip install 'reflectgym[vllm]')"
    return None


def _ray_reason() -> str | None:
    if importlib.util.find_spec("ray") is None:
        return "Ray is not installed (pip install 'reflectgym[ray]')"
    return None


RESOURCE_CHECKS = {
    "docker": _docker_reason,
    "browser": _browser_reason,
    "gpu": _gpu_reason,
    "vllm": _vllm_reason,
    "ray": _ray_reason,
}


def resource_missing(resource: str) -> str | None:
    """Why `resource` cannot be used here, or None if it can."""
    return RESOURCE_CHECKS[resource]()
