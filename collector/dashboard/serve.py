"""Serving the dashboard's files. They hold no data: the page asks /api/v1 with the token its
user types in, so these routes need none (collector.auth.HTTP_ROLES: PUBLIC)."""

from __future__ import annotations

from pathlib import Path

from aiohttp import web

from collector.params import QueryError

DASHBOARD_DIR = Path(__file__).parent
_TYPES = {".html": "text/html", ".js": "text/javascript", ".css": "text/css"}
# Scripts and styles from this origin only, no inline script; the page calls only its own API.
_SECURITY = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
        "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}
# The page is fetched afresh each time, so an upgraded collector serves its own; assets revalidate.
_PAGE_HEADERS = {**_SECURITY, "Cache-Control": "no-store"}
_ASSET_HEADERS = {**_SECURITY, "Cache-Control": "no-cache"}


class Dashboard:
    """The dashboard's files, read once: the page and the assets by file name (the vendored
    library's included), so a request can name nothing outside them."""

    def __init__(self, root: Path = DASHBOARD_DIR) -> None:
        self._page = (root / "index.html").read_bytes()
        self._assets = {
            path.name: (path.read_bytes(), _TYPES[path.suffix])
            for path in sorted(root.rglob("*"))
            if path.suffix in (".js", ".css")
        }

    async def page(self, request: web.Request) -> web.Response:
        _no_query(request)
        return web.Response(body=self._page, content_type="text/html", charset="utf-8", headers=_PAGE_HEADERS)

    async def asset(self, request: web.Request) -> web.Response:
        _no_query(request)
        found = self._assets.get(request.match_info["name"])
        if found is None:
            raise web.HTTPNotFound()
        body, content_type = found
        return web.Response(body=body, content_type=content_type, charset="utf-8", headers=_ASSET_HEADERS)


def _no_query(request: web.Request) -> None:
    """A 400 for query parameters, as on every route: these files take none."""
    for name in request.query:
        raise QueryError(name, f"unknown query parameter {name!r} (expected: none)", code="unknown_parameter")
