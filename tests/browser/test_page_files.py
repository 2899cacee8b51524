"""`GET /blotter` and its static files: types, caching, compression, and nothing outside the
static directory (the handlers are public: the auth middleware lets them through)."""

from __future__ import annotations

import gzip
import re
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from web.page import IMMUTABLE, STATIC_DIR, StaticFiles, install_page

VENDOR_JS = next(STATIC_DIR.glob("vendor/ag-grid-community-*.min.js")).name


@pytest.fixture
async def client() -> AsyncIterator[TestClient]:
    app = web.Application()
    install_page(app)
    async with TestClient(TestServer(app)) as test_client:
        yield test_client


async def test_page_is_html_revalidated_and_locked_down(client: TestClient) -> None:
    resp = await client.get("/blotter")
    assert resp.status == 200
    assert resp.headers["Content-Type"] == "text/html; charset=utf-8"
    assert resp.headers["Cache-Control"] == "no-cache"
    csp = resp.headers["Content-Security-Policy"]
    assert "script-src 'self'" in csp and "unsafe-eval" not in csp
    assert resp.headers["Referrer-Policy"] == "no-referrer"  # the dev token may be in the URL
    assert "Real-Time Updates" in await resp.text()

    again = await client.get("/blotter", headers={"If-None-Match": resp.headers["ETag"]})
    assert again.status == 304
    assert await again.read() == b""


async def test_vendored_grid_is_gzipped_and_cached_for_good(client: TestClient) -> None:
    path = f"/blotter/static/vendor/{VENDOR_JS}"
    resp = await client.get(path, headers={"Accept-Encoding": "gzip"}, auto_decompress=False)
    assert resp.status == 200
    assert resp.headers["Content-Type"] == "text/javascript; charset=utf-8"
    assert resp.headers["Content-Encoding"] == "gzip"
    assert resp.headers["Cache-Control"] == IMMUTABLE
    body = await resp.read()
    original = (STATIC_DIR / "vendor" / VENDOR_JS).read_bytes()
    assert gzip.decompress(body) == original
    assert len(body) < len(original) / 2

    plain = await client.get(path, headers={"Accept-Encoding": "identity"})
    assert "Content-Encoding" not in plain.headers
    assert await plain.read() == original

    head = await client.head(path, headers={"Accept-Encoding": "identity"})
    assert head.status == 200 and int(head.headers["Content-Length"]) == len(original)


@pytest.mark.parametrize(
    "path",
    [
        "../page.py",
        "%2e%2e/page.py",
        "vendor/../../page.py",
        "vendor/%2e%2e/%2e%2e/page.py",
        "..%2fpage.py",
        ".hidden",
        "vendor",
        "missing.js",
        "%00.js",
    ],
)
async def test_nothing_outside_the_static_files(client: TestClient, path: str) -> None:
    resp = await client.get("/blotter/static/" + path)
    assert resp.status == 404
    assert "import" not in await resp.text()


@pytest.mark.parametrize(
    ("name", "content_type"),
    [("blotter.css", "text/css; charset=utf-8"), ("blotter.js", "text/javascript; charset=utf-8")],
)
async def test_own_files_revalidate(client: TestClient, name: str, content_type: str) -> None:
    resp = await client.get(f"/blotter/static/{name}")
    assert resp.status == 200
    assert resp.headers["Content-Type"] == content_type
    assert resp.headers["Cache-Control"] == "no-cache"
    assert resp.headers["X-Content-Type-Options"] == "nosniff"


def referenced_files() -> set[Path]:
    """Every static file index.html and the page's modules load (by absolute or relative URL)."""
    found = set()
    html = (STATIC_DIR / "index.html").read_text()
    for url in re.findall(r'(?:src|href)="/blotter/static/([^"]+)"', html):
        found.add(STATIC_DIR / url)
    for module in STATIC_DIR.glob("*.js"):
        for url in re.findall(r"from '\./([^']+)'", module.read_text()):
            found.add(STATIC_DIR / url)
    return found


def test_every_file_the_page_loads_exists_and_is_vendored_with_its_license() -> None:
    files = referenced_files()
    assert STATIC_DIR / "vendor" / VENDOR_JS in files
    assert STATIC_DIR / "blotter.js" in files
    missing = [str(f.relative_to(STATIC_DIR)) for f in files if not f.is_file()]
    assert missing == []
    assert "MIT License" in (STATIC_DIR / "vendor" / "LICENSE-ag-grid-community.txt").read_text()
    # One self-contained file, no CDN, no source maps pointing elsewhere.
    grid = (STATIC_DIR / "vendor" / VENDOR_JS).read_bytes()
    assert len(grid) < 2 * 1024 * 1024
    assert b"sourceMappingURL" not in grid[-2000:]


def test_resolve_refuses_escapes_even_through_symlinks(tmp_path: Path) -> None:
    root = tmp_path / "static"
    (root / "vendor").mkdir(parents=True)
    (root / "vendor" / "lib.js").write_text("ok")
    (tmp_path / "secret.txt").write_text("secret")
    (root / "link.txt").symlink_to(tmp_path / "secret.txt")
    files = StaticFiles(root)
    assert files.resolve("vendor/lib.js") == (root / "vendor" / "lib.js").resolve()
    for bad in ("link.txt", "../secret.txt", "vendor/../../secret.txt", "/etc/passwd",
                "vendor\\lib.js", "vendor//lib.js", "./vendor/lib.js", "vendor", ""):
        assert files.resolve(bad) is None, bad
