"""Task pages served with their local scripts and stylesheets inlined, so a page loads in one request.

Every episode starts in a fresh browser context, whose HTTP cache is empty, so each page load fetched its
scripts and stylesheets again: 20-30 ms per request through Chromium's network service even from 127.0.0.1,
most of a MiniWoB page's load. An inlined `<script>` runs exactly where and when the external one would have
(both block the parser), and an inlined stylesheet applies as the linked one would. Only plain references to
files of the same mounted folder are inlined; anything that could change meaning stays a request: a script
with other attributes (`defer`, `async`, `type="module"`), a stylesheet with `url(...)` or `@import` (relative
to the stylesheet's own address) or a `media` query, and text that would end the inline element early.
"""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import unquote

_SCRIPT = re.compile(rb"<script\b([^>]*)>\s*</script>", re.I)
_LINK = re.compile(rb"<link\b([^>]*)>", re.I)
_ATTRIBUTE = re.compile(rb'([a-z-]+)\s*=\s*"([^"]*)"', re.I)
_SCRIPT_BREAKERS = (b"</script", b"<!--")
_STYLE_BREAKERS = (b"</style", b"url(", b"@import")


def _attributes(text: bytes, allowed: dict[bytes, bytes | None]) -> dict[bytes, bytes] | None:
    """The tag's attributes if they are only `allowed` ones (name -> required value, or `None` for any)."""
    found = {name.lower(): value for name, value in _ATTRIBUTE.findall(text)}
    if _ATTRIBUTE.sub(b"", text).strip(b" \t\r\n/") or set(found) - set(allowed):
        return None
    for name, required in allowed.items():
        if required is not None and name in found and found[name].lower() != required:
            return None
    return found


def inline_assets(html: bytes, page: Path, root: Path) -> bytes:
    """`html` (the page at `page`, served from `root`) with its local scripts and stylesheets inlined."""

    def local(reference: bytes) -> bytes | None:
        text = reference.decode("utf-8", "replace")
        if ":" in text or text.startswith("/") or "?" in text or "#" in text:
            return None
        target = (page.parent / unquote(text)).resolve()
        if not target.is_relative_to(root) or not target.is_file():
            return None
        return target.read_bytes()

    def script(match: re.Match[bytes]) -> bytes:
        attributes = _attributes(match.group(1), {b"src": None, b"type": b"text/javascript"})
        code = local(attributes[b"src"]) if attributes and b"src" in attributes else None
        if code is None or any(marker in code.lower() for marker in _SCRIPT_BREAKERS):
            return match.group(0)
        return b"<script>" + code + b"\n</script>"

    def stylesheet(match: re.Match[bytes]) -> bytes:
        attributes = _attributes(match.group(1), {b"rel": b"stylesheet", b"href": None, b"type": b"text/css"})
        if not attributes or b"rel" not in attributes or b"href" not in attributes:
            return match.group(0)
        css = local(attributes[b"href"])
        if css is None or any(marker in css.lower() for marker in _STYLE_BREAKERS):
            return match.group(0)
        return b"<style>" + css + b"\n</style>"

    return _LINK.sub(stylesheet, _SCRIPT.sub(script, html))
