"""claw_core.api.gateway_frames: parsing is total (Invalid or a frame), builders round-trip, the handshake pieces
match the reference byte for byte. Also the device identity of claw_adapters.gateway (pure, no I/O but a tmp file)."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import stat
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from hypothesis import given
from hypothesis import strategies as st

from claw_adapters.gateway.identity import DeviceIdentity, DeviceIdentityError
from claw_core.api import gateway_frames as frames
from claw_core.errors import Invalid, UpstreamError

# -- parse_frame ---------------------------------------------------------------------------------------------------


def test_parses_the_three_frame_shapes() -> None:
    assert frames.parse_frame('{"type":"req","id":"1","method":"chat.send","params":{"a":1}}') == frames.ReqFrame(
        "1", "chat.send", {"a": 1}
    )
    assert frames.parse_frame('{"type":"res","id":"1","ok":true,"payload":{"runId":"r"}}') == frames.ResFrame(
        "1", True, {"runId": "r"}
    )
    assert frames.parse_frame('{"type":"event","event":"tick","payload":{"ts":5},"seq":7}') == frames.EventFrame(
        "tick", {"ts": 5}, 7
    )


def test_parses_an_error_response() -> None:
    frame = frames.parse_frame(
        json.dumps(
            {
                "type": "res",
                "id": "x",
                "ok": False,
                "error": {
                    "code": "UNAVAILABLE",
                    "message": "starting",
                    "retryable": True,
                    "retryAfterMs": 250,
                    "details": {"reason": "startup-sidecars"},
                },
            }
        )
    )
    assert isinstance(frame, frames.ResFrame)
    assert not frame.ok
    assert frame.error == frames.ErrorShape("UNAVAILABLE", "starting", True, 250, {"reason": "startup-sidecars"})


def test_optional_parts_default() -> None:
    assert frames.parse_frame('{"type":"event","event":"x"}') == frames.EventFrame("x", {}, None)
    assert frames.parse_frame('{"type":"req","id":"1","method":"m"}') == frames.ReqFrame("1", "m", {})
    assert frames.parse_frame('{"type":"res","id":"1","ok":true}') == frames.ResFrame("1", True, None)
    # extra fields (stateVersion, traceparent, ...) are ignored
    assert frames.parse_frame('{"type":"event","event":"x","stateVersion":{"a":1},"seq":1}') == frames.EventFrame(
        "x", {}, 1
    )


@pytest.mark.parametrize(
    "text",
    [
        "",
        "not json",
        "{",
        "[1,2]",
        '"event"',
        "null",
        "{}",
        '{"type":"weird","id":"1"}',
        '{"type":5}',
        '{"type":"req","id":1,"method":"m"}',
        '{"type":"req","id":"","method":"m"}',
        '{"type":"req","id":"1"}',
        '{"type":"req","id":"1","method":"m","params":[]}',
        '{"type":"res","ok":true}',
        '{"type":"res","id":"1","ok":"yes"}',
        '{"type":"res","id":"1","ok":false}',
        '{"type":"res","id":"1","ok":false,"error":"boom"}',
        '{"type":"res","id":"1","ok":false,"error":{"message":"no code"}}',
        '{"type":"res","id":"1","ok":false,"error":{"code":"X","message":"m","retryable":"no"}}',
        '{"type":"event","payload":{}}',
        '{"type":"event","event":"x","payload":[1]}',
        '{"type":"event","event":"x","seq":"1"}',
        '{"type":"event","event":"x","seq":true}',
        '{"type":"event","event":"x","seq":1.5}',
        '{"type":"event","event":"x","seq":NaN}',
        '{"type":"event","event":"x","payload":{"v":Infinity}}',
        "[" * 100_000,
        '{"type":"event","event":"x","seq":' + "9" * 5000 + "}",
    ],
)
def test_malformed_frames_are_invalid(text: str) -> None:
    with pytest.raises(Invalid):
        frames.parse_frame(text)


def test_invalid_never_quotes_the_frame() -> None:
    secret = "s3cr3t-token-value"
    for text in (f'{{"type":"x{secret}"}}', f"garbage {secret}", f'{{"type":"req","id":"{secret}"}}'):
        with pytest.raises(Invalid) as raised:
            frames.parse_frame(text)
        assert secret not in str(raised.value)


@given(st.text())
def test_arbitrary_text_parses_or_is_invalid(text: str) -> None:
    try:
        frame = frames.parse_frame(text)
    except Invalid:
        return
    assert isinstance(frame, frames.ReqFrame | frames.ResFrame | frames.EventFrame)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=20,
)


@given(
    st.dictionaries(
        st.sampled_from(["type", "id", "method", "params", "ok", "payload", "error", "event", "seq"]),
        json_values | st.sampled_from(["req", "res", "event"]),
    )
)
def test_arbitrary_json_objects_parse_or_are_invalid(obj: dict[str, object]) -> None:
    try:
        frame = frames.parse_frame(json.dumps(obj))
    except Invalid:
        return
    assert isinstance(frame, frames.ReqFrame | frames.ResFrame | frames.EventFrame)


@given(st.binary())
def test_arbitrary_bytes_parse_or_are_invalid(data: bytes) -> None:
    try:
        frame = frames.parse_frame(data)
    except Invalid:
        return
    assert isinstance(frame, frames.ReqFrame | frames.ResFrame | frames.EventFrame)


# -- builders --------------------------------------------------------------------------------------------------------


@given(
    st.text(min_size=1),
    st.text(min_size=1),
    st.dictionaries(st.text(max_size=8), json_values, max_size=4),
)
def test_built_frames_round_trip(frame_id: str, name: str, params: dict[str, object]) -> None:
    assert frames.parse_frame(frames.encode(frames.req(frame_id, name, params))) == frames.ReqFrame(
        frame_id, name, params
    )
    assert frames.parse_frame(frames.encode(frames.event(name, params, 3))) == frames.EventFrame(name, params, 3)
    assert frames.parse_frame(frames.encode(frames.res_ok(frame_id, params))) == frames.ResFrame(frame_id, True, params)


def test_res_error_shape() -> None:
    frame = frames.res_error("7", "INVALID_REQUEST", "unknown method: x")
    assert frame == {
        "type": "res",
        "id": "7",
        "ok": False,
        "error": {"code": "INVALID_REQUEST", "message": "unknown method: x"},
    }
    parsed = frames.parse_frame(
        frames.encode(frames.res_error("7", "UNAVAILABLE", "m", retryable=True, retry_after_ms=5))
    )
    assert isinstance(parsed, frames.ResFrame)
    assert parsed.error == frames.ErrorShape("UNAVAILABLE", "m", True, 5, None)


def test_event_without_seq_has_none() -> None:
    assert "seq" not in frames.event("connect.challenge", {"nonce": "n", "ts": 1})


def test_encode_is_compact_utf8_and_encoded_size_counts_bytes() -> None:
    text = frames.encode(frames.req("1", "m", {"t": "é"}))
    assert text == '{"type":"req","id":"1","method":"m","params":{"t":"é"}}'
    assert frames.encoded_size(text) == len(text) + 1
    with pytest.raises(ValueError):
        frames.encode({"x": float("nan")})


def test_upstream_error_carries_code_retryable_and_details() -> None:
    error = frames.upstream_error(frames.ErrorShape("UNAVAILABLE", "busy", True, 1500, {"reason": "queue"}))
    assert isinstance(error, UpstreamError)
    assert (error.message, error.code, error.retryable) == ("busy", "UNAVAILABLE", True)
    assert error.details == {"retryAfterMs": 1500, "reason": "queue"}
    plain = frames.upstream_error(frames.ErrorShape("INVALID_REQUEST", "unknown method: x"))
    assert (plain.code, plain.retryable, plain.details) == ("INVALID_REQUEST", False, None)


# -- handshake -------------------------------------------------------------------------------------------------------


def test_parse_challenge() -> None:
    challenge = frames.parse_challenge({"nonce": "abc", "ts": 1737264000000, "capabilities": ["x"]})
    assert challenge == frames.Challenge("abc", 1737264000000)
    for bad in ({"ts": 1}, {"nonce": "", "ts": 1}, {"nonce": "n"}, {"nonce": "n", "ts": "1"}, {"nonce": "n", "ts": -1}):
        with pytest.raises(Invalid):
            frames.parse_challenge(bad)


def test_parse_hello_reads_protocol_methods_and_policy() -> None:
    hello = frames.parse_hello(
        {
            "type": "hello-ok",
            "protocol": 4,
            "features": {"methods": ["chat.send", 5], "events": ["tick"]},
            "policy": {"maxPayload": 1000, "tickIntervalMs": 15000},
        }
    )
    assert (hello.protocol, hello.methods, hello.events) == (4, ("chat.send",), ("tick",))
    assert (hello.max_payload, hello.tick_interval_ms) == (1000, 15000)
    bare = frames.parse_hello({"type": "hello-ok", "protocol": 3})
    assert (bare.max_payload, bare.tick_interval_ms) == (frames.DEFAULT_MAX_PAYLOAD, frames.DEFAULT_TICK_INTERVAL_MS)
    for bad in (None, {}, {"type": "hello-ok"}, {"type": "hello", "protocol": 4}, {"type": "hello-ok", "protocol": 5}):
        with pytest.raises(Invalid):
            frames.parse_hello(bad)


def test_connect_params_match_the_reference() -> None:
    device = frames.device_block("id", "pk", "sig", 5, "nonce")
    params = frames.connect_params(client_version="1.2.3", platform="linux", token="tok", device=device)
    assert params == {
        "minProtocol": 3,
        "maxProtocol": 4,
        "client": {"id": "gateway-client", "version": "1.2.3", "platform": "linux", "mode": "backend"},
        "role": "operator",
        "scopes": ["operator.read", "operator.write", "operator.admin"],
        "caps": ["tool-events"],
        "auth": {"token": "tok"},
        "device": {"id": "id", "publicKey": "pk", "signature": "sig", "signedAt": 5, "nonce": "nonce"},
        "userAgent": "claw-connector/1.2.3",
    }
    without = frames.connect_params(client_version="1", platform="linux", token=None)
    assert "auth" not in without
    assert "device" not in without


def test_connect_frame_keeps_secrets_out_of_its_head_and_tail() -> None:
    """websockets' frame trace shows the first 48 and last 24 characters; neither holds the token or signature."""
    token, signature = "TOKEN-abcdefghijklmnop", "SIGNATURE-abcdefghijklmnop"
    device = frames.device_block("d" * 64, "p" * 43, signature, 1, "n")
    text = frames.encode(
        frames.req(
            "0b7e6c1e-0000-4000-8000-000000000000",
            "connect",
            frames.connect_params(client_version="0.1.0", platform="linux", token=token, device=device),
        )
    )
    for shown in (text[:48], text[-24:]):
        assert token not in shown
        assert signature not in shown


def test_device_auth_payload_v3_exactly() -> None:
    payload = frames.device_auth_payload_v3(
        "dev",
        "gateway-client",
        "backend",
        "operator",
        ["operator.read", "operator.write"],
        1737264000000,
        "tok",
        "nonce-1",
        "Linux",
        "Desktop",
    )
    assert (
        payload
        == "v3|dev|gateway-client|backend|operator|operator.read,operator.write|1737264000000|tok|nonce-1|linux|desktop"
    )
    empty = frames.device_auth_payload_v3("dev", "c", "m", "r", [], 1, None, "n", "macOS", None)
    assert empty == "v3|dev|c|m|r||1||n|macos|"
    assert frames.device_auth_payload_v2("dev", "c", "m", "r", ["a", "b"], 1, "t", "n") == "v2|dev|c|m|r|a,b|1|t|n"


# -- device identity ---------------------------------------------------------------------------------------------------


def test_identity_id_key_and_signature() -> None:
    identity = DeviceIdentity.generate()
    raw = identity.public_key_raw
    assert len(raw) == 32
    assert identity.device_id == hashlib.sha256(raw).hexdigest()
    assert identity.device_id == identity.device_id.lower()
    assert "=" not in identity.public_key_b64url
    assert base64.urlsafe_b64decode(identity.public_key_b64url + "=") == raw
    signature = identity.sign("v3|payload")
    assert "=" not in signature and "+" not in signature and "/" not in signature
    decoded = base64.urlsafe_b64decode(signature + "=" * (-len(signature) % 4))
    Ed25519PublicKey.from_public_bytes(raw).verify(decoded, b"v3|payload")  # raises if wrong
    assert identity.device_id[:12] in repr(identity)


def test_identity_file_is_created_0600_and_reloaded(tmp_path: Path) -> None:
    path = tmp_path / "data" / "device.pem"
    created = DeviceIdentity.load_or_create(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert path.read_bytes().startswith(b"-----BEGIN PRIVATE KEY-----")
    assert DeviceIdentity.load_or_create(path).device_id == created.device_id
    assert DeviceIdentity.load(path).device_id == created.device_id
    assert [p.name for p in path.parent.iterdir()] == ["device.pem"]  # no temp file left behind


def test_identity_reads_a_raw_seed_file(tmp_path: Path) -> None:
    seed = bytes(range(32))
    path = tmp_path / "seed.key"
    path.write_bytes(seed)
    path.chmod(0o600)
    assert DeviceIdentity.load(path).device_id == DeviceIdentity.from_seed(seed).device_id


@pytest.mark.skipif(os.name != "posix", reason="POSIX permission bits")
@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o660])
def test_identity_file_readable_by_others_is_refused(tmp_path: Path, mode: int) -> None:
    path = tmp_path / "device.pem"
    DeviceIdentity.load_or_create(path)
    path.chmod(mode)
    with pytest.raises(DeviceIdentityError, match="chmod 600"):
        DeviceIdentity.load_or_create(path)


def test_identity_refuses_symlinks_garbage_and_other_keys(tmp_path: Path) -> None:
    real = tmp_path / "real.pem"
    DeviceIdentity.load_or_create(real)
    link = tmp_path / "link.pem"
    link.symlink_to(real)
    with pytest.raises(DeviceIdentityError, match="symlink"):
        DeviceIdentity.load(link)
    garbage = tmp_path / "garbage.pem"
    garbage.write_bytes(b"not a key at all")
    garbage.chmod(0o600)
    with pytest.raises(DeviceIdentityError, match="neither"):
        DeviceIdentity.load(garbage)
    with pytest.raises(DeviceIdentityError):
        DeviceIdentity.load(tmp_path)  # a directory
    with pytest.raises(DeviceIdentityError):
        DeviceIdentity.from_seed(b"short")
