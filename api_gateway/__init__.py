"""The API gateway: the OpenStack Compute API v2 over HTTP (aiohttp)."""
