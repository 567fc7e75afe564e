"""The HTTP transport's settings: one typed, validated value built once by the composition root."""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = ["HttpSettings"]

_ORIGIN = re.compile(r"^[a-z][a-z0-9+.-]*://[^/?#\s]+$", re.IGNORECASE)
_TOKEN_CHARS = re.compile(r"^[\x21-\x7e]+$")
"""Visible ASCII: what a `Bearer` credential in a header can carry without ambiguity."""


@dataclass(frozen=True, slots=True)
class HttpSettings:
    """Who may talk to the API and how much they may ask of it.

    Every limit exists because of an attack in `security.md`: the token and the Host/Origin allowlists against DNS
    rebinding and cross-site requests, the failure budget against token guessing, the timeouts and the connection cap
    against slowloris.
    """

    token: str
    """The bearer token every request needs (unless its route says otherwise). Required: the API never runs open."""
    allowed_hosts: tuple[str, ...] = ()
    """Host names accepted besides loopback (`127.0.0.1`, `localhost`, `[::1]`); compared without the port."""
    cors_origins: tuple[str, ...] = ()
    """Exact origins (`https://app.example`) a browser may call the API from; never `*` or `null`."""
    auth_failures_per_minute: int = 30
    """Failed authentications a client address may make in a sliding minute before all its requests get 429."""
    max_tracked_clients: int = 10_000
    """Client addresses the failure limiter remembers at most, so its memory stays bounded."""
    max_connections_per_client: int = 128
    """Open connections one client address may hold; further ones are closed at once."""
    header_timeout_s: float = 10.0
    """Absolute deadline for a request's headers, counted from the connection's opening or its previous response
    (so it also closes idle keep-alive connections). Bytes trickling in do not extend it."""
    body_timeout_s: float = 30.0
    """Absolute deadline for reading a request body once its headers are in."""
    upload_timeout_s: float = 300.0
    """Absolute deadline for streaming a multipart upload (up to a route's `MultipartLimits`) once its headers are
    in: longer than `body_timeout_s`, since such a body may be a hundred megabytes, yet still a deadline."""
    staging_dir: str | None = None
    """Where multipart file parts are streamed before a handler takes them over (0700, created when missing; files
    0600). Best on the filesystem of the upload store, so taking a file over is a rename. None: a private temporary
    folder made when the app starts and removed when it stops."""
    shutdown_timeout_s: float = 10.0
    """How long `HttpServer.stop` lets in-flight requests finish before cancelling them."""
    max_header_bytes: int = 8190
    """Longest request line and longest header field."""
    max_headers: int = 64
    """Most header fields a request may have."""
    cors_max_age_s: int = 600
    self_authenticating_paths: tuple[str, ...] = ()
    """Paths (the browser WebSocket relay) that check the token themselves, inside their own protocol: browsers
    cannot put an Authorization header on a WebSocket. Host and Origin are checked there like everywhere, and
    their failed attempts count toward the same limiter."""
    """How long a browser may cache a preflight answer."""

    def __post_init__(self) -> None:
        if not self.token:
            raise ValueError("HttpSettings.token is required: the API never runs without a token")
        if not _TOKEN_CHARS.match(self.token):
            raise ValueError("HttpSettings.token must be visible ASCII without spaces")
        for origin in self.cors_origins:
            if not _ORIGIN.match(origin):
                raise ValueError(f"HttpSettings.cors_origins: {origin!r} is not an exact scheme://host[:port] origin")
        for host in self.allowed_hosts:
            if not host or any(char in host for char in "/?#@ \t"):
                raise ValueError(f"HttpSettings.allowed_hosts: {host!r} is not a host name")
        positive = {
            "auth_failures_per_minute": self.auth_failures_per_minute,
            "max_tracked_clients": self.max_tracked_clients,
            "max_connections_per_client": self.max_connections_per_client,
            "header_timeout_s": self.header_timeout_s,
            "body_timeout_s": self.body_timeout_s,
            "upload_timeout_s": self.upload_timeout_s,
            "max_header_bytes": self.max_header_bytes,
            "max_headers": self.max_headers,
        }
        for name, value in positive.items():
            if value <= 0:
                raise ValueError(f"HttpSettings.{name} must be positive")
        if self.shutdown_timeout_s < 0 or self.cors_max_age_s < 0:
            raise ValueError("HttpSettings timeouts and ages cannot be negative")
