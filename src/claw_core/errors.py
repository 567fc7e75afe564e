"""One small hierarchy of errors. Adapters turn library errors into these; transports turn these into status codes."""

from __future__ import annotations

__all__ = [
    "ClawError",
    "Conflict",
    "Forbidden",
    "Invalid",
    "NotFound",
    "RateLimited",
    "TooLarge",
    "Unauthorized",
    "Unavailable",
    "UpstreamError",
]


class ClawError(Exception):
    """Base of every error the core raises on purpose. `str(error)` is safe to show to a client."""

    status = 500

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class Invalid(ClawError):
    """The request is malformed or breaks a rule of the domain."""

    status = 400


class Unauthorized(ClawError):
    status = 401


class Forbidden(ClawError):
    status = 403


class NotFound(ClawError):
    status = 404


class Conflict(ClawError):
    status = 409


class TooLarge(ClawError):
    status = 413


class RateLimited(ClawError):
    status = 429

    def __init__(self, message: str, retry_after_s: float | None = None) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class Unavailable(ClawError):
    """A backend the request needs cannot be reached right now."""

    status = 503


class UpstreamError(ClawError):
    """The gateway answered a request with an error. `code` is the gateway's own error code."""

    status = 502

    def __init__(
        self, message: str, *, code: str = "UNAVAILABLE", retryable: bool = False, details: object = None
    ) -> None:
        super().__init__(message)
        self.code = code
        self.retryable = retryable
        self.details = details
