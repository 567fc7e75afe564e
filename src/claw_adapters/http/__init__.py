"""The HTTP transport: aiohttp in front of claw_core.api."""

from claw_adapters.http.addresses import is_loopback_host
from claw_adapters.http.app import create_app
from claw_adapters.http.server import HttpServer, start_http
from claw_adapters.http.settings import HttpSettings

__all__ = ["HttpServer", "HttpSettings", "create_app", "is_loopback_host", "start_http"]
