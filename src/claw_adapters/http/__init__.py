"""The HTTP transport: aiohttp in front of claw_core.api."""
