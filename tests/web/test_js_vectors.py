"""The browser client's test vectors are what the Python core produces now.

``tests/js/`` (run by ``node --test`` in ``make test``) checks the JS frame codec,
fragmentation, composite metadata, demand engine and request signing against
``tests/js/vectors/`` (signing: the headers of ``sign_request``); this
test fails when those files no longer match the core, so the two implementations cannot
drift apart silently.
"""

from __future__ import annotations

import json

from tests.web import js_vectors


def test_the_committed_js_vectors_are_what_the_python_core_writes() -> None:
    for name, text in js_vectors.build().items():
        path = js_vectors.VECTORS / name
        assert path.exists(), f"{path} is missing: run `python -m tests.web.js_vectors`"
        committed = path.read_text(encoding="utf-8")
        assert committed == text, f"{path} is stale (the Python core changed): run `python -m tests.web.js_vectors`"


def test_the_vectors_cover_every_frame_type_every_policy_and_both_signed_requests() -> None:
    frames = json.loads(js_vectors.build()["frames.json"])
    types = {case["frame"]["type"] for case in frames["encoded"] + frames["decodeOnly"]}
    assert types >= {
        "SETUP", "LEASE", "KEEPALIVE", "REQUEST_RESPONSE", "REQUEST_FNF", "REQUEST_STREAM", "REQUEST_CHANNEL",
        "REQUEST_N", "CANCEL", "PAYLOAD", "ERROR", "METADATA_PUSH", "UNSUPPORTED",
    }  # fmt: skip
    demand = json.loads(js_vectors.build()["demand.json"])
    kinds = {trace["policy"]["kind"] for trace in demand["traces"]}
    assert kinds == {"window", "limit_rate", "manual", "adaptive"}
    windows = [op[4][9] for trace in demand["traces"] if trace["policy"]["kind"] == "adaptive" for op in trace["ops"]]
    assert max(windows) >= 32 and min(windows) <= 4, "the adaptive traces must make the window grow and shrink"
    signing = json.loads(js_vectors.build()["signing.json"])
    assert {(case["method"].upper(), case["path"]) for case in signing} >= {("GET", "/ice-servers"), ("POST", "/offer")}
    assert any(not case["secret"].isascii() for case in signing) and any(not case["body"].isascii() for case in signing)
