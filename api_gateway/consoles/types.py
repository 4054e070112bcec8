"""The console types of the API (nova 2013.1): which action takes each, which display
protocol it reaches, and the URL a client gets for it.

A URL is ``<base>?token=<token>`` (nova's form), ``<base>`` a setting (nova's names) or, by
default, this gateway's own console routes (proxy.py, pages.py). Page URLs (noVNC, spice-html5)
also carry ``path``: where the page's WebSocket is, token included, which both generations
of noVNC's pages read (noVNC 1.x's ``vnc_lite.html`` ignores ``token``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal
from urllib.parse import quote, urlsplit

from shared.config import Settings
from shared.messages import ConsoleProtocol

#: where the console routes live on a gateway
PREFIX = "/consoles"


@dataclass(frozen=True)
class ConsoleType:
    """One value of the actions' ``type``."""

    name: str
    #: the action that takes it
    action: Literal["os-getVNCConsole", "os-getSPICEConsole"]
    protocol: ConsoleProtocol
    #: the setting of its URL's base, and the gateway's own route when that is unset
    setting: Literal["novncproxy_base_url", "xvpvncproxy_base_url", "html5proxy_base_url"]
    default_path: str
    #: the base is a page that opens a WebSocket (``path``), not the WebSocket itself
    page: bool


TYPES: dict[str, ConsoleType] = {
    t.name: t
    for t in (
        ConsoleType(
            "novnc",
            "os-getVNCConsole",
            "vnc",
            "novncproxy_base_url",
            f"{PREFIX}/novnc/vnc_auto.html",
            page=True,
        ),
        ConsoleType(
            "xvpvnc",
            "os-getVNCConsole",
            "vnc",
            "xvpvncproxy_base_url",
            f"{PREFIX}/xvpvnc/console",
            page=False,
        ),
        ConsoleType(
            "spice-html5",
            "os-getSPICEConsole",
            "spice",
            "html5proxy_base_url",
            f"{PREFIX}/spice/spice_auto.html",
            page=True,
        ),
    )
}


def of_action(action: str, name: object) -> ConsoleType | None:
    """The console type ``name`` if ``action`` takes it; None otherwise (nova: 400)."""
    found = TYPES.get(name) if isinstance(name, str) else None
    return found if found is not None and found.action == action else None


def url(settings: Settings, gateway: str, kind: ConsoleType, token: str) -> str:
    """The URL a client opens the console at; ``gateway`` is this gateway's base URL."""
    base = getattr(settings, kind.setting) or f"{gateway}{kind.default_path}"
    answer = f"{base}?token={quote(token)}"
    if kind.page:
        answer += "&path=" + quote(f"{websocket_path(base)}?token={token}", safe="")
    return answer


def websocket_path(page: str) -> str:
    """The WebSocket beside a page (``…/novnc/vnc_auto.html`` -> ``…/novnc/websockify``), as
    noVNC's ``path``: relative to the host's root, no leading slash."""
    directory = urlsplit(page).path.rsplit("/", 1)[0]
    return f"{directory}/websockify".lstrip("/")
