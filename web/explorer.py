"""The GraphiQL explorer served from this server's own npm-installed assets (offline, strict CSP).

`scripts/install_graphiql.sh` installs the pinned packages into static/explorer/node_modules.
When they are absent, `explorer_page` returns None and the caller falls back to Strawberry's
CDN-hosted page.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

from starlette.requests import Request
from starlette.responses import FileResponse, HTMLResponse, PlainTextResponse, Response
from starlette.routing import Route

EXPLORER_DIR = Path(__file__).resolve().parent.parent / "static" / "explorer"
ASSETS_PATH = "/graphiql-assets"

# Only the page's own directives: scripts and styles from this origin (GraphiQL sets inline
# style attributes, hence 'unsafe-inline' for styles only), fonts inlined as data URLs, and
# fetch/WebSocket to this origin ('self' covers ws:/wss: on the same host in CSP Level 3).
CONTENT_SECURITY_POLICY = "; ".join(
    (
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self' 'unsafe-inline'",
        "font-src 'self' data:",
        "img-src 'self' data:",
        "connect-src 'self'",
        "base-uri 'none'",
        "form-action 'none'",
        "frame-ancestors 'none'",
    )
)
# Asset URLs carry ?v=<hash of the lock file and our files>, so they can be cached for a week.
ASSET_CACHE_CONTROL = "public, max-age=604800"

# URL name → (path under static/explorer, media type). Nothing else under it is served.
VENDOR_FILES = {
    "react.production.min.js": "node_modules/react/umd/react.production.min.js",
    "react-dom.production.min.js": "node_modules/react-dom/umd/react-dom.production.min.js",
    "graphiql.min.js": "node_modules/graphiql/graphiql.min.js",
    "graphiql.min.css": "node_modules/graphiql/graphiql.min.css",
}
OWN_FILES = {"explorer.js": "explorer.js", "explorer.css": "explorer.css"}
MEDIA_TYPES = {".js": "text/javascript; charset=utf-8", ".css": "text/css; charset=utf-8"}


@dataclass
class Explorer:
    """The explorer page and its whitelisted assets under one directory."""

    directory: Path = EXPLORER_DIR
    _page: str | None = field(default=None, init=False, repr=False)

    def files(self) -> dict[str, Path]:
        """Every servable asset by URL name."""
        return {name: self.directory / rel for name, rel in (VENDOR_FILES | OWN_FILES).items()}

    def installed(self) -> bool:
        """True when every asset the page needs is on disk."""
        return all(path.is_file() for path in self.files().values())

    def version(self) -> str:
        """Short hash of the pinned lock file and our own files (cache-busting query string)."""
        digest = hashlib.sha256()
        for rel in ("package-lock.json", *OWN_FILES.values()):
            path = self.directory / rel
            digest.update(path.read_bytes() if path.is_file() else b"")
        return digest.hexdigest()[:12]

    def page(self) -> HTMLResponse | None:
        """The explorer page, or None when the npm assets are not installed."""
        if not self.installed():
            return None
        if self._page is None:
            template = (self.directory / "index.html").read_text(encoding="utf-8")
            self._page = template.replace("{assets}", ASSETS_PATH).replace(
                "{version}", self.version()
            )
        return HTMLResponse(
            self._page,
            headers={
                "content-security-policy": CONTENT_SECURITY_POLICY,
                "cache-control": "no-cache",
            },
        )

    def asset(self, name: str) -> Response:
        """One whitelisted asset, or 404 (unknown name or not installed)."""
        path = self.files().get(name)
        if path is None or not path.is_file():
            return PlainTextResponse("not found", status_code=404)
        return FileResponse(
            path,
            media_type=MEDIA_TYPES[path.suffix],
            headers={"cache-control": ASSET_CACHE_CONTROL, "x-content-type-options": "nosniff"},
        )


EXPLORER = Explorer()


def explorer_page() -> HTMLResponse | None:
    """The offline explorer page; None means "fall back to Strawberry's CDN page"."""
    return EXPLORER.page()


async def serve_asset(request: Request) -> Response:
    return EXPLORER.asset(request.path_params["name"])


def explorer_routes() -> list[Route]:
    """Routes serving the explorer's assets under /graphiql-assets/."""
    return [Route(ASSETS_PATH + "/{name}", serve_asset, methods=["GET", "HEAD"])]
