"""Typed keys for what the application and each request carry."""

from __future__ import annotations

from typing import TYPE_CHECKING

import asyncpg
from aiohttp import web

from api_gateway.views.cache import RenderCache
from shared.bus import Bus
from shared.config import Settings
from shared.image_data import ImageData
from shared.sealing import Keyring

if TYPE_CHECKING:
    from api_gateway.compute.api import ComputeAPI
    from api_gateway.context import RequestContext

SETTINGS = web.AppKey("settings", Settings)
POOL = web.AppKey("pool", asyncpg.Pool)
BUS = web.AppKey("bus", Bus)
COMPUTE: web.AppKey[ComputeAPI] = web.AppKey("compute")
RENDER_CACHE = web.AppKey("render_cache", RenderCache)
IMAGE_DATA: web.AppKey[ImageData] = web.AppKey("image_data")
KEYRING = web.AppKey("keyring", Keyring)

# per request (``request[...]``): set by the middlewares
REQUEST_ID = web.RequestKey("request_id", str)
CONTEXT: web.RequestKey[RequestContext] = web.RequestKey("context")


def context(request: web.Request) -> RequestContext:
    return request[CONTEXT]


def compute(request: web.Request) -> ComputeAPI:
    return request.app[COMPUTE]
