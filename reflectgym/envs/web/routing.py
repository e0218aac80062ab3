"""Serving task pages: mounted local folders on a loopback HTTP server; every other request is blocked.

`SiteRouter` decides what a URL on the task site gets (a mounted file, or a 404 saying why) and `SiteServer`
answers the browser with it from 127.0.0.1. The browser contexts route every request *not* on that origin to a
handler that refuses and logs it (`BrowserService`), so pages never reach a real network. Serving from a
loopback server rather than answering each request through Playwright's routing keeps a page load to one hop
(it was 60-190 ms per MiniWoB page through routing, most of a reset).
"""

from __future__ import annotations

import hashlib
import logging
import mimetypes
import re
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlsplit

from reflectgym.envs.web.inline import inline_assets

log = logging.getLogger(__name__)


BLANK_PAGE = b"<!DOCTYPE html><html><head><title>ready</title></head><body></body></html>"
"""Served at the origin's root: spare pages wait there, so their renderer already belongs to the task site."""


@dataclass(frozen=True)
class Response:
    """What to answer a routed request with: a file's bytes, or a refusal (`body is None`)."""

    status: int
    body: bytes | None
    content_type: str
    reason: str = ""


class SiteRouter:
    """Maps URL prefixes on `origin` to folders and answers requests from them (thread-safe, cached)."""

    def __init__(self, origin: str) -> None:
        self.origin = origin
        self._mounts: dict[str, Path] = {}
        self._cache: dict[Path, bytes] = {}
        self._lock = threading.Lock()

    def mount(self, folder: str | Path) -> str:
        """Serves `folder` and returns its base URL (ending in `/`); the same folder always gets the same URL."""
        root = Path(folder).resolve()
        if not root.is_dir():
            raise FileNotFoundError(f"cannot serve {root}: not a folder")
        prefix = "/site/" + hashlib.sha1(str(root).encode()).hexdigest()[:12] + "/"
        with self._lock:
            self._mounts[prefix] = root
        return self.origin + prefix

    def decide(self, url: str) -> Response:
        """The response for `url`: a mounted file, or a refusal saying why."""
        parts = urlsplit(url)
        if f"{parts.scheme}://{parts.netloc}" != self.origin:
            return Response(status=0, body=None, content_type="", reason="outside the task site")
        if parts.path == "/":
            return Response(status=200, body=BLANK_PAGE, content_type="text/html; charset=utf-8")
        with self._lock:
            mounts = list(self._mounts.items())
        for prefix, root in mounts:
            if not parts.path.startswith(prefix):
                continue
            target = (root / unquote(parts.path[len(prefix) :])).resolve()
            if not target.is_relative_to(root) or not target.is_file():
                return Response(status=404, body=b"not found", content_type="text/plain", reason="no such file")
            return Response(status=200, body=self._read(target, root), content_type=_content_type(target))
        return Response(status=404, body=b"not found", content_type="text/plain", reason="no mounted folder")

    def _read(self, path: Path, root: Path) -> bytes:
        with self._lock:
            cached = self._cache.get(path)
        if cached is None:
            cached = path.read_bytes()
            if path.suffix.lower() in (".html", ".htm"):
                cached = inline_assets(cached, path, root)
            with self._lock:
                self._cache[path] = cached
        return cached


def _content_type(path: Path) -> str:
    guessed, _ = mimetypes.guess_type(path.name)
    if guessed is None:
        return "application/octet-stream"
    return f"{guessed}; charset=utf-8" if guessed.startswith("text/") or guessed.endswith("javascript") else guessed


class SiteServer:
    """A loopback HTTP server (its own thread) answering with a `SiteRouter`; `origin` is its address."""

    def __init__(self) -> None:
        router_holder: list[SiteRouter] = []

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                response = router_holder[0].decide(router_holder[0].origin + self.path)
                if response.status != 200:
                    log.info("no file for %s (%s)", self.path, response.reason)
                body = response.body or b""
                try:
                    self.send_response(response.status or 404)
                    self.send_header("Content-Type", response.content_type or "text/plain")
                    self.send_header("Content-Length", str(len(body)))
                    self.send_header("Cache-Control", "no-store")
                    self.end_headers()
                    self.wfile.write(body)
                except ConnectionError:  # the page went away mid-load (its context was closed): nothing to say
                    self.close_connection = True

            def log_message(self, format: str, *args: object) -> None:
                return None

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        host, port = self._server.server_address[:2]
        self.origin = f"http://{host}:{port}"
        self.router = SiteRouter(self.origin)
        router_holder.append(self.router)
        self._thread = threading.Thread(target=self._server.serve_forever, name="reflectgym-site", daemon=True)
        self._thread.start()

    def off_site(self) -> re.Pattern[str]:
        """A pattern matching every URL that is not on this server (what the browser must block)."""
        return re.compile("^(?!" + re.escape(self.origin + "/") + ")")

    def close(self) -> None:
        """Stops the server."""
        self._server.shutdown()
        self._server.server_close()
