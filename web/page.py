"""The blotter web page: `GET /blotter` and its static files under `/blotter/static/`.

The page holds no data: it is a static client of the REST API and the WebSocket stream, which
authenticate every data call. Files are read once, off the event loop, and kept in memory (the
whole page is about 2 MB), because the worker's loop also runs the Faust agents and must never
wait on a disk read or a gzip of the grid library.

Caching: file names under `vendor/` carry their version, so they are cached for a year as
immutable; the page's own files are revalidated on every load (ETag, 304) so an upgrade shows at
once. Gzip is used when the browser accepts it (precomputed once per file).
"""

from __future__ import annotations

import asyncio
import gzip
import hashlib
from dataclasses import dataclass
from pathlib import Path

from aiohttp import hdrs, web

PAGE_PATH = "/blotter"
STATIC_PREFIX = "/blotter/static/"
STATIC_DIR = Path(__file__).resolve().parent / "static"
INDEX_FILE = "index.html"

CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".mjs": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".json": "application/json",
    ".map": "application/json",
    ".txt": "text/plain; charset=utf-8",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".ico": "image/x-icon",
    ".woff2": "font/woff2",
}
COMPRESSIBLE = frozenset((".html", ".js", ".mjs", ".css", ".json", ".map", ".txt", ".svg"))
IMMUTABLE = "public, max-age=31536000, immutable"
REVALIDATE = "no-cache"

# The page loads only its own files and talks only to its own origin. AG Grid injects its theme
# as <style> elements and sets inline sizes, hence 'unsafe-inline' for styles (never scripts).
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; font-src 'self' data:; connect-src 'self'; "
    "frame-ancestors 'none'; base-uri 'none'; form-action 'none'; object-src 'none'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    # The dev token may be in the page's URL: never leak it to another site in a Referer.
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
}


@dataclass(frozen=True, slots=True)
class StaticFile:
    """One file as served: its bytes, a gzipped copy when worth it, and its validators."""

    body: bytes
    gzipped: bytes | None
    content_type: str
    etag: str
    cache_control: str


class StaticFiles:
    """Files below one directory, loaded on first request and kept in memory."""

    def __init__(self, root: Path = STATIC_DIR) -> None:
        self.root = root.resolve()
        self._cache: dict[str, StaticFile] = {}
        self._lock = asyncio.Lock()

    def resolve(self, relative: str) -> Path | None:
        """The file `relative` names inside the root, or None (missing, a directory, hidden, or
        outside the root through `..` or a symlink)."""
        if not relative or relative.startswith("/") or "\\" in relative or "\x00" in relative:
            return None
        parts = relative.split("/")
        if any(part in ("", ".", "..") or part.startswith(".") for part in parts):
            return None
        path = (self.root / relative).resolve()
        if not path.is_relative_to(self.root) or not path.is_file():
            return None
        return path

    async def get(self, relative: str) -> StaticFile | None:
        cached = self._cache.get(relative)
        if cached is not None:
            return cached
        async with self._lock:
            cached = self._cache.get(relative)
            if cached is None:
                loaded = await asyncio.to_thread(self._load, relative)
                if loaded is None:
                    return None
                self._cache[relative] = cached = loaded
        return cached

    def _load(self, relative: str) -> StaticFile | None:
        path = self.resolve(relative)
        if path is None:
            return None
        body = path.read_bytes()
        suffix = path.suffix.lower()
        gzipped = None
        if suffix in COMPRESSIBLE and len(body) > 1024:
            gzipped = gzip.compress(body, compresslevel=6, mtime=0)
        return StaticFile(
            body=body,
            gzipped=gzipped,
            content_type=CONTENT_TYPES.get(suffix, "application/octet-stream"),
            etag='"' + hashlib.sha256(body).hexdigest()[:32] + '"',
            cache_control=IMMUTABLE if relative.startswith("vendor/") else REVALIDATE,
        )

    async def respond(self, request: web.Request, relative: str) -> web.StreamResponse:
        """The file as a response: 304 when the browser's copy is current, gzip if accepted."""
        file = await self.get(relative)
        if file is None:
            raise web.HTTPNotFound(text="not found")
        headers = {
            hdrs.CACHE_CONTROL: file.cache_control,
            hdrs.ETAG: file.etag,
            hdrs.VARY: hdrs.ACCEPT_ENCODING,
            **SECURITY_HEADERS,
        }
        if _etag_matches(request.headers.get(hdrs.IF_NONE_MATCH, ""), file.etag):
            return web.Response(status=304, headers=headers)
        body = file.body
        if file.gzipped is not None and _accepts_gzip(request):
            body = file.gzipped
            headers[hdrs.CONTENT_ENCODING] = "gzip"
        headers[hdrs.CONTENT_TYPE] = file.content_type
        if request.method == hdrs.METH_HEAD:
            headers[hdrs.CONTENT_LENGTH] = str(len(body))
            return web.Response(headers=headers)
        return web.Response(body=body, headers=headers)


def _etag_matches(if_none_match: str, etag: str) -> bool:
    candidates = {tag.strip().removeprefix("W/") for tag in if_none_match.split(",")}
    return etag in candidates or "*" in candidates


def _accepts_gzip(request: web.Request) -> bool:
    for entry in request.headers.get(hdrs.ACCEPT_ENCODING, "").split(","):
        coding, _, params = entry.strip().partition(";")
        if coding.strip().lower() == "gzip":
            return params.replace(" ", "").lower() not in ("q=0", "q=0.0", "q=0.00", "q=0.000")
    return False


class BlotterPage:
    """The aiohttp handlers of the page."""

    def __init__(self, files: StaticFiles | None = None) -> None:
        self.files = files or StaticFiles()

    async def index(self, request: web.Request) -> web.StreamResponse:
        return await self.files.respond(request, INDEX_FILE)

    async def static(self, request: web.Request) -> web.StreamResponse:
        return await self.files.respond(request, request.match_info["path"])


def install_page(web_app: web.Application, files: StaticFiles | None = None) -> BlotterPage:
    """Mount `GET /blotter` and `GET /blotter/static/{path}` on an aiohttp application.

    Both paths must be public in the auth middleware (the page holds no data; its REST and
    WebSocket calls carry the user's token). From Faust's web hooks:
    `app.web_init_hooks.append(lambda server: install_page(server.web_app))`.
    """
    page = BlotterPage(files)
    router = web_app.router
    router.add_get(PAGE_PATH, page.index)
    router.add_get(STATIC_PREFIX + "{path:.+}", page.static)
    return page
