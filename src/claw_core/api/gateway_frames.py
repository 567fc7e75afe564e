"""The OpenClaw gateway's wire protocol, as pure data: frame parsing and building, the connect handshake and the
device-signature payload.

Three frame shapes travel as JSON text over one WebSocket (see reference/openclaw-gateway.md):

- request  `{"type":"req","id":str,"method":str,"params":object?}`
- response `{"type":"res","id":str,"ok":bool,"payload":any?}` or `{..."ok":false,"error":{code,message,...}}`
- event    `{"type":"event","event":str,"payload":object?,"seq":int?}`

`parse_frame` turns text into one of three frozen dataclasses and raises `Invalid` (and nothing else) for anything
that is not one of them; the builders produce the JSON objects and `encode` the compact text that goes on the wire.
Both the connector's gateway client and its browser relay speak this, and so does the fake gateway of the tests.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from claw_core.errors import Invalid, UpstreamError
from claw_core.model import JsonObject

__all__ = [
    "CLIENT_ID",
    "CLIENT_MODE",
    "DEFAULT_CAPS",
    "DEFAULT_MAX_PAYLOAD",
    "DEFAULT_SCOPES",
    "DEFAULT_TICK_INTERVAL_MS",
    "MAX_PROTOCOL",
    "MIN_PROTOCOL",
    "ROLE",
    "Challenge",
    "ErrorShape",
    "EventFrame",
    "Frame",
    "Hello",
    "ReqFrame",
    "ResFrame",
    "connect_params",
    "device_auth_payload_v2",
    "device_auth_payload_v3",
    "device_block",
    "encode",
    "encoded_size",
    "event",
    "parse_challenge",
    "parse_frame",
    "parse_hello",
    "req",
    "res_error",
    "res_ok",
    "upstream_error",
]

CLIENT_ID: Final = "gateway-client"
CLIENT_MODE: Final = "backend"
ROLE: Final = "operator"
DEFAULT_SCOPES: Final = ("operator.read", "operator.write", "operator.admin")
DEFAULT_CAPS: Final = ("tool-events",)
MIN_PROTOCOL: Final = 3
MAX_PROTOCOL: Final = 4
DEFAULT_TICK_INTERVAL_MS: Final = 30_000
"""What a hello without `policy.tickIntervalMs` means."""
DEFAULT_MAX_PAYLOAD: Final = 25 * 1024 * 1024
"""What a hello without `policy.maxPayload` means (the gateway's own default, 25 MiB)."""


@dataclass(frozen=True, slots=True)
class ReqFrame:
    id: str
    method: str
    params: JsonObject = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class ErrorShape:
    """The `error` of an ok:false response."""

    code: str
    message: str
    retryable: bool = False
    retry_after_ms: int | None = None
    details: Any = None


@dataclass(frozen=True, slots=True)
class ResFrame:
    id: str
    ok: bool
    payload: Any = None
    """Whatever JSON value the gateway sent (an object for every method the connector uses); None when absent."""
    error: ErrorShape | None = None
    """Set exactly when `ok` is false."""


@dataclass(frozen=True, slots=True)
class EventFrame:
    event: str
    payload: JsonObject = field(default_factory=dict)
    seq: int | None = None


Frame = ReqFrame | ResFrame | EventFrame


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _string(obj: Mapping[str, Any], key: str, kind: str, *, empty: bool = False) -> str:
    value = obj.get(key)
    if not isinstance(value, str) or (not empty and not value):
        raise Invalid(f"{kind} frame: `{key}` must be a non-empty string")
    return value


def _optional_int(obj: Mapping[str, Any], key: str, kind: str) -> int | None:
    value = obj.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise Invalid(f"{kind} frame: `{key}` must be an integer")
    return value


def _object(obj: Mapping[str, Any], key: str, kind: str) -> JsonObject:
    value = obj.get(key)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise Invalid(f"{kind} frame: `{key}` must be an object")
    return value


def _error_shape(value: Any) -> ErrorShape:
    if not isinstance(value, dict):
        raise Invalid("res frame: ok:false needs an `error` object")
    retryable = value.get("retryable", False)
    if not isinstance(retryable, bool):
        raise Invalid("res frame: `error.retryable` must be a boolean")
    return ErrorShape(
        code=_string(value, "code", "res frame error"),
        message=_string(value, "message", "res frame error", empty=True),
        retryable=retryable,
        retry_after_ms=_optional_int(value, "retryAfterMs", "res frame error"),
        details=value.get("details"),
    )


def parse_frame(text: str | bytes) -> Frame:
    """One frame from its JSON text. Raises `Invalid` (never anything else) for malformed JSON, a value that is not
    an object, an unknown `type`, or a missing or mistyped field. Unknown extra fields are ignored. The message of
    the error never quotes the frame."""
    try:
        obj = json.loads(text, parse_constant=_reject_constant)
    except (ValueError, TypeError, RecursionError) as error:
        # JSONDecodeError, NaN/Infinity, over-long integers, invalid UTF-8 in bytes, pathological nesting.
        raise Invalid(f"frame is not valid JSON ({type(error).__name__})") from None
    if not isinstance(obj, dict):
        raise Invalid("frame is not a JSON object")
    kind = obj.get("type")
    if kind == "req":
        return ReqFrame(
            id=_string(obj, "id", "req"), method=_string(obj, "method", "req"), params=_object(obj, "params", "req")
        )
    if kind == "res":
        frame_id = _string(obj, "id", "res")
        ok = obj.get("ok")
        if not isinstance(ok, bool):
            raise Invalid("res frame: `ok` must be a boolean")
        if ok:
            return ResFrame(id=frame_id, ok=True, payload=obj.get("payload"))
        return ResFrame(id=frame_id, ok=False, payload=obj.get("payload"), error=_error_shape(obj.get("error")))
    if kind == "event":
        return EventFrame(
            event=_string(obj, "event", "event"),
            payload=_object(obj, "payload", "event"),
            seq=_optional_int(obj, "seq", "event"),
        )
    if isinstance(kind, str):
        raise Invalid(f"unknown frame type ({len(kind)} chars)")
    raise Invalid("frame has no string `type`")


# -- builders ---------------------------------------------------------------------------------------------------------


def req(id: str, method: str, params: JsonObject | None = None) -> JsonObject:
    return {"type": "req", "id": id, "method": method, "params": params if params is not None else {}}


def res_ok(id: object, payload: Any = None) -> JsonObject:
    return {"type": "res", "id": id, "ok": True, "payload": payload if payload is not None else {}}


def res_error(
    id: object,
    code: str,
    message: str,
    *,
    retryable: bool | None = None,
    retry_after_ms: int | None = None,
    details: Any = None,
) -> JsonObject:
    error: JsonObject = {"code": code, "message": message}
    if details is not None:
        error["details"] = details
    if retryable is not None:
        error["retryable"] = retryable
    if retry_after_ms is not None:
        error["retryAfterMs"] = retry_after_ms
    return {"type": "res", "id": id, "ok": False, "error": error}


def event(name: str, payload: JsonObject | None = None, seq: int | None = None) -> JsonObject:
    frame: JsonObject = {"type": "event", "event": name, "payload": payload if payload is not None else {}}
    if seq is not None:
        frame["seq"] = seq
    return frame


def encode(frame: JsonObject) -> str:
    """The compact JSON text of a frame (UTF-8 kept as is, so `encoded_size` is what goes on the wire)."""
    return json.dumps(frame, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def encoded_size(text: str) -> int:
    return len(text.encode("utf-8", "surrogatepass"))


def upstream_error(error: ErrorShape) -> UpstreamError:
    """The core's error for an ok:false answer; `details` carries the gateway's details and `retryAfterMs`."""
    details = error.details
    if error.retry_after_ms is not None:
        details = {"retryAfterMs": error.retry_after_ms, **(details if isinstance(details, dict) else {})}
    return UpstreamError(error.message or error.code, code=error.code, retryable=error.retryable, details=details)


# -- handshake --------------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Challenge:
    """The payload of the `connect.challenge` event."""

    nonce: str
    ts: int


def parse_challenge(payload: JsonObject) -> Challenge:
    nonce = payload.get("nonce")
    ts = payload.get("ts")
    if not isinstance(nonce, str) or not nonce:
        raise Invalid("connect.challenge without a nonce")
    if isinstance(ts, bool) or not isinstance(ts, int) or ts < 0:
        raise Invalid("connect.challenge without a non-negative integer ts")
    return Challenge(nonce, ts)


@dataclass(frozen=True, slots=True)
class Hello:
    """What the connector uses of `hello-ok`; `raw` is the whole payload (GatewayStatus.hello)."""

    protocol: int
    methods: tuple[str, ...]
    events: tuple[str, ...]
    max_payload: int
    tick_interval_ms: int
    raw: JsonObject


def _positive(policy: JsonObject, key: str, default: int) -> int:
    value = policy.get(key)
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        return default
    return value


def _names(features: JsonObject, key: str) -> tuple[str, ...]:
    value = features.get(key)
    if not isinstance(value, list):
        return ()
    return tuple(name for name in value if isinstance(name, str))


def parse_hello(payload: Any) -> Hello:
    """The `hello-ok` answer to `connect`. Missing policy values take the gateway's defaults."""
    if not isinstance(payload, dict) or payload.get("type") != "hello-ok":
        raise Invalid("connect was answered without hello-ok")
    protocol = payload.get("protocol")
    if isinstance(protocol, bool) or not isinstance(protocol, int):
        raise Invalid("hello-ok without an integer protocol")
    if not MIN_PROTOCOL <= protocol <= MAX_PROTOCOL:
        raise Invalid(f"gateway speaks protocol {protocol}, this client {MIN_PROTOCOL}..{MAX_PROTOCOL}")
    features = payload.get("features")
    features = features if isinstance(features, dict) else {}
    policy = payload.get("policy")
    policy = policy if isinstance(policy, dict) else {}
    return Hello(
        protocol=protocol,
        methods=_names(features, "methods"),
        events=_names(features, "events"),
        max_payload=_positive(policy, "maxPayload", DEFAULT_MAX_PAYLOAD),
        tick_interval_ms=_positive(policy, "tickIntervalMs", DEFAULT_TICK_INTERVAL_MS),
        raw=payload,
    )


def device_auth_payload_v3(  # noqa: PLR0917 - positional, in the order of the signed fields
    device_id: str,
    client_id: str,
    client_mode: str,
    role: str,
    scopes: Sequence[str],
    signed_at_ms: int,
    token: str | None,
    nonce: str,
    platform: str,
    device_family: str | None,
) -> str:
    """The string a device signs: `v3|deviceId|clientId|clientMode|role|scopes,joined|signedAt|token|nonce|platform|
    deviceFamily`, platform and family lowercased, an absent token or family empty."""
    return "|".join(
        [
            "v3",
            device_id,
            client_id,
            client_mode,
            role,
            ",".join(scopes),
            str(signed_at_ms),
            token or "",
            nonce,
            platform.strip().lower(),
            (device_family or "").strip().lower(),
        ]
    )


def device_auth_payload_v2(  # noqa: PLR0917 - positional, in the order of the signed fields
    device_id: str,
    client_id: str,
    client_mode: str,
    role: str,
    scopes: Sequence[str],
    signed_at_ms: int,
    token: str | None,
    nonce: str,
) -> str:
    """The older payload (gateways before v3): the same without platform and device family."""
    return "|".join(
        ["v2", device_id, client_id, client_mode, role, ",".join(scopes), str(signed_at_ms), token or "", nonce]
    )


def device_block(device_id: str, public_key: str, signature: str, signed_at_ms: int, nonce: str) -> JsonObject:
    """`connect.params.device`: the public key and signature base64url without padding."""
    return {"id": device_id, "publicKey": public_key, "signature": signature, "signedAt": signed_at_ms, "nonce": nonce}


def connect_params(
    *,
    client_version: str,
    platform: str,
    token: str | None,
    device: JsonObject | None = None,
    client_id: str = CLIENT_ID,
    client_mode: str = CLIENT_MODE,
    role: str = ROLE,
    scopes: Sequence[str] = DEFAULT_SCOPES,
    caps: Sequence[str] = DEFAULT_CAPS,
    device_family: str | None = None,
    min_protocol: int = MIN_PROTOCOL,
    max_protocol: int = MAX_PROTOCOL,
    user_agent: str | None = None,
    locale: str | None = None,
) -> JsonObject:
    """The params of the `connect` request. The secrets (`auth`, `device`) sit in the middle of the object, so
    a log line that shows only the head and tail of a frame never shows them."""
    client: JsonObject = {"id": client_id, "version": client_version, "platform": platform, "mode": client_mode}
    if device_family:
        client["deviceFamily"] = device_family
    params: JsonObject = {
        "minProtocol": min_protocol,
        "maxProtocol": max_protocol,
        "client": client,
        "role": role,
        "scopes": list(scopes),
        "caps": list(caps),
    }
    if token is not None:
        params["auth"] = {"token": token}
    if device is not None:
        params["device"] = device
    if locale is not None:
        params["locale"] = locale
    params["userAgent"] = user_agent or f"claw-connector/{client_version}"
    return params
