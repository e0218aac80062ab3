"""Builds the Docker sandbox image locally, with no registry: the host's system Python and the libraries it loads.

The image holds `/usr/bin/python3`, its standard library, the shared libraries that it and its extension modules
link (found with `ldd`), an `/etc/passwd` with `nobody`, and empty `/work` and `/tmp`. It is imported with
`docker import` (through the SDK) under a tag that is a hash of its contents, so a changed host Python gives a new
tag and an unchanged one is never rebuilt. Run `python -m reflectgym.sandboxes.docker_image` to build it ahead.

Threat model: the image is the container's read-only root; it has no shell, no package manager, no setuid
binaries and no secrets (only files of the Debian packages of Python and its libraries).
"""

from __future__ import annotations

import hashlib
import io
import os
import re
import subprocess
import sys
import tarfile
from pathlib import Path
from typing import Any

from reflectgym.sandboxes.types import SandboxError

REPOSITORY = "reflectgym-sandbox"
BUILDER_VERSION = "1"
"""Bumped when the image layout changes, so the tag changes with it."""
PYTHON = Path("/usr/bin/python3")
SKIPPED_STDLIB = ("test", "idlelib", "tkinter", "turtledemo", "ensurepip", "lib2to3", "pydoc_data")
_LDD_PATH = re.compile(r"(/\S+)")


def image_files(python: Path = PYTHON) -> dict[str, Path]:
    """Path inside the image -> host file, for the interpreter, its standard library and the libraries they link."""
    if not python.exists():
        raise SandboxError(f"{python} is missing; install Debian's python3 to build the Docker sandbox image")
    binary = python.resolve()
    version = f"python{sys.version_info.major}.{sys.version_info.minor}"
    stdlib = Path("/usr/lib") / binary.name if (Path("/usr/lib") / binary.name).is_dir() else Path("/usr/lib") / version
    files: dict[str, Path] = {str(binary): binary}
    for path in sorted(stdlib.rglob("*")):
        relative = path.relative_to(stdlib)
        if path.is_file() and not path.is_symlink() and relative.parts[0] not in SKIPPED_STDLIB:
            files[str(path)] = path
    for binary_file in [binary, *(p for p in files.values() if p.suffix == ".so")]:
        for library in _linked_libraries(binary_file):
            files[str(library)] = library.resolve()
    return files


def _linked_libraries(binary: Path) -> list[Path]:
    done = subprocess.run(["ldd", str(binary)], capture_output=True, text=True, check=False)
    found = []
    for line in done.stdout.splitlines():
        if "not found" in line:
            continue
        match = _LDD_PATH.search(line.split("=>")[-1])
        if match:
            found.append(Path(match.group(1)))
    return found


def image_tag(files: dict[str, Path]) -> str:
    """`reflectgym-sandbox:<hash>` of the builder version and every file's path, size and mtime."""
    digest = hashlib.sha256(BUILDER_VERSION.encode())
    for inside, host in sorted(files.items()):
        stat = host.stat()
        digest.update(f"{inside}\0{stat.st_size}\0{int(stat.st_mtime)}\n".encode())
    return f"{REPOSITORY}:{digest.hexdigest()[:16]}"


def root_filesystem(files: dict[str, Path], python: Path = PYTHON) -> bytes:
    """The image's root filesystem as an uncompressed tar."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for directory, mode in (("work", 0o1777), ("tmp", 0o1777), ("proc", 0o555), ("dev", 0o755), ("sys", 0o555)):
            _add_dir(tar, directory, mode)
        for link, target in (("bin", "usr/bin"), ("lib", "usr/lib"), ("lib64", "usr/lib64"), ("sbin", "usr/sbin")):
            info = tarfile.TarInfo(link)
            info.type, info.linkname = tarfile.SYMTYPE, target
            tar.addfile(info)
        _add_bytes(tar, "etc/passwd", b"root:x:0:0::/:/nonexistent\nnobody:x:65534:65534::/work:/nonexistent\n")
        _add_bytes(tar, "etc/group", b"root:x:0:\nnogroup:x:65534:\n")
        added: set[str] = set()
        for inside, host in sorted(files.items()):
            name = os.path.normpath(inside).lstrip("/")
            for lib_dir in ("lib/", "lib64/", "bin/", "sbin/"):
                if name.startswith(lib_dir):
                    name = "usr/" + name
            if name in added:
                continue
            added.add(name)
            info = tar.gettarinfo(str(host), arcname=name)
            info.uid = info.gid = 0
            info.uname = info.gname = "root"
            with host.open("rb") as handle:
                tar.addfile(info, handle)
        info = tarfile.TarInfo("usr/bin/python3")
        info.type, info.linkname = tarfile.SYMTYPE, python.resolve().name
        tar.addfile(info)
    return buffer.getvalue()


def _add_dir(tar: tarfile.TarFile, name: str, mode: int) -> None:
    info = tarfile.TarInfo(name)
    info.type, info.mode = tarfile.DIRTYPE, mode
    tar.addfile(info)


def _add_bytes(tar: tarfile.TarFile, name: str, content: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mode = len(content), 0o644
    tar.addfile(info, io.BytesIO(content))


def ensure_image(client: Any) -> str:
    """The sandbox image's tag, importing the image first when the engine lacks it."""
    import docker.errors

    files = image_files()
    tag = image_tag(files)
    try:
        client.images.get(tag)
        return tag
    except docker.errors.ImageNotFound:
        pass
    repository, version = tag.split(":")
    try:
        client.api.import_image_from_data(root_filesystem(files), repository=repository, tag=version)
        client.images.get(tag)
    except docker.errors.DockerException as error:
        raise SandboxError(f"could not import the sandbox image {tag}: {error}") from error
    return tag


def main() -> None:
    """Build (or find) the image and print its tag."""
    import docker

    print(ensure_image(docker.from_env()))


if __name__ == "__main__":
    main()
