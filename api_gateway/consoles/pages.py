"""The consoles' web pages, served from their Debian packages when they are installed:
noVNC (``novnc``, ``STRATUS_NOVNC_DIR``: ``/usr/share/novnc``) under ``/consoles/novnc/``,
spice-html5 (``spice-html5``, ``STRATUS_SPICE_HTML5_DIR``) under ``/consoles/spice/``.

A console URL names nova's pages, ``vnc_auto.html`` and ``spice_auto.html``; noVNC 1.x ships
``vnc_lite.html`` in their place, which is served for it. Without the package there is no
page (404), and the WebSocket beside it (proxy.py) still serves any websockify client. One
route serves every file, whether or not a package is there, so the gateway's routes do not
depend on what the machine has installed.
"""

from __future__ import annotations

from pathlib import Path

from aiohttp import web

from api_gateway import keys
from api_gateway.consoles.types import PREFIX
from api_gateway.http.faults import ItemNotFound
from shared.config import Settings

routes = web.RouteTableDef()

#: each package's console page, and the files that may be it (first found wins)
_PAGES = {
    "novnc": ("vnc_auto.html", ("vnc_auto.html", "vnc_lite.html")),
    "spice": ("spice_auto.html", ("spice_auto.html",)),
}


@routes.get(PREFIX + "/novnc/{path:.+}")
async def novnc(request: web.Request) -> web.StreamResponse:
    return await _serve(request, "novnc")


@routes.get(PREFIX + "/spice/{path:.+}")
async def spice(request: web.Request) -> web.StreamResponse:
    return await _serve(request, "spice")


async def _serve(request: web.Request, package: str) -> web.StreamResponse:
    """A file of the package (the console page included); 404 for anything else."""
    name = request.match_info["path"]
    directory = _directory(request.app[keys.SETTINGS], package)
    page, candidates = _PAGES[package]
    for candidate in candidates if name == page else (name,):
        path = _inside(directory, candidate)
        if path is not None:
            return web.FileResponse(path)
    raise ItemNotFound(
        f"{directory} has no {name}: install the Debian package for the console pages, or "
        "open the console's WebSocket (websockify's protocol) with any client."
    )


def _directory(settings: Settings, package: str) -> Path:
    return settings.novnc_dir if package == "novnc" else settings.spice_html5_dir


def _inside(directory: Path, name: str) -> Path | None:
    """``directory/name`` if it is a file there (never outside it: ``..``, links out)."""
    try:
        root = directory.resolve()
        path = (root / name).resolve()
        return path if path.is_relative_to(root) and path.is_file() else None
    except (OSError, ValueError):  # a name no file system takes (too long...): no such file
        return None
