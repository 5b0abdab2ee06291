"""The web chat at `/`: a page and its assets, all packaged with edgeinf (nothing is fetched
from elsewhere), which talks to the server's public API like any other client."""

from __future__ import annotations

from importlib.resources import files

from fastapi import APIRouter, Response

from edgeinf.server.errors import ApiError

router = APIRouter(include_in_schema=False)
PREFIX = "/page/"  # the assets; like `/`, open without an API key (they hold no data)
_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
    ".txt": "text/plain; charset=utf-8",
}
ASSETS = {f.name: f for f in files("edgeinf.server").joinpath("assets").iterdir() if f.is_file()}
# The page runs only its own scripts and styles and talks only to this server: a model's
# answer that got past the renderer's escaping still could not run or load anything.
_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}


def is_page(path: str) -> bool:
    return path == "/" or path.startswith(PREFIX)


def _asset(name: str) -> Response:
    found = ASSETS.get(name)
    suffix = name[name.rfind(".") :] if "." in name else ""
    if found is None or suffix not in _TYPES:
        raise ApiError(404, f"the page has no file '{name}'", "not_found_error", "not_found")
    return Response(found.read_bytes(), media_type=_TYPES[suffix], headers=_HEADERS)


@router.get("/")
async def page() -> Response:
    return _asset("index.html")


@router.get(PREFIX + "{name}")
async def asset(name: str) -> Response:
    return _asset(name)
