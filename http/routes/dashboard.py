"""The dashboard's static shell: ``GET /`` and its assets under ``/dashboard/``.

Unauthenticated by contract (the page holds no data; every call it makes carries the session
token). Files come only from the ``static/`` folder beside this module, by an allow-list of
suffixes, through Quart's safe join. The answers carry a strict Content-Security-Policy: the
page may load its own scripts and styles and talk to its own origin, nothing else, so it can
make no network fetch elsewhere and an injected ``<script>`` could not run.
"""

from __future__ import annotations

from pathlib import Path

from quart import Blueprint, Response, send_from_directory
from werkzeug.exceptions import NotFound

from gateway.http.errors import ApiError

STATIC = Path(__file__).resolve().parent.parent / "static"
ASSET_SUFFIXES = frozenset({".js", ".css", ".html", ".png", ".svg", ".ico", ".txt"})

CSP = "; ".join(
    [
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data:",
        "connect-src 'self'",
        "font-src 'self'",
        "base-uri 'none'",
        "form-action 'none'",
        "frame-ancestors 'none'",
    ]
)

bp = Blueprint("dashboard", __name__)


def _harden(response: Response) -> Response:
    response.headers["Content-Security-Policy"] = CSP
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "no-referrer"
    response.headers["X-Frame-Options"] = "DENY"
    response.headers["Cross-Origin-Opener-Policy"] = "same-origin"
    response.headers["Cross-Origin-Resource-Policy"] = "same-origin"
    # Revalidate every time: a gateway upgrade must never leave an old app.js in the cache.
    response.headers["Cache-Control"] = "no-cache"
    return response


async def _send(name: str) -> Response:
    if Path(name).suffix not in ASSET_SUFFIXES or name.startswith(".") or "/." in name:
        raise ApiError(404, "not_found", "no such dashboard asset")
    try:
        response = await send_from_directory(STATIC, name)
    except NotFound:
        raise ApiError(404, "not_found", "no such dashboard asset") from None
    if name.endswith(".js"):
        response.mimetype = "text/javascript"
    return _harden(response)


@bp.get("/")
async def index() -> Response:
    """The dashboard page; sign in with ``gateway open`` (``/#challenge=...``)."""
    return await _send("index.html")


@bp.get("/dashboard/<path:assetPath>")
async def asset(assetPath: str) -> Response:
    """The page's scripts and styles (no build step, nothing fetched from elsewhere)."""
    return await _send(assetPath)
