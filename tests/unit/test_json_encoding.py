import json

from claw_adapters.http.responses import encode_json


def test_values_orjson_refuses_still_encode() -> None:
    value = {"metadata": {"big": 10**30, "text": "é"}}
    assert json.loads(encode_json(value)) == value


def test_the_fast_path_matches_the_standard_library() -> None:
    value = {"messages": [{"id": "m1", "content": "héllo \u2028 <mark>", "seq": None, "ok": True}], "hasMore": False}
    assert json.loads(encode_json(value)) == value
