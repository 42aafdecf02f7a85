"""What drawstate stores decodes into the Go engine's DrawState: checked by the engine's own encoding/json.

The documents are built the way the daemon stores them (canonical JSON with
operation_id, metadata, then version, `_token` and `_expires` appended as the
save script does) and read by clients/go/internal/enginefixtures' decode mode,
which is the engine's struct and json.Unmarshal; and the bytes real saves left in Redis, read back.
Skips without Go.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from drawstated.codec import encode_head
from drawstated.legacy.convert import Converted, convert
from tests.support.golang import build, go_unavailable
from tests.unit.strategies import PROPERTY_SETTINGS, valid_states

pytestmark = pytest.mark.skipif(go_unavailable() is not None, reason=str(go_unavailable()))

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "go_engine"
DECODE_TIMEOUT_S = 60.0
EXPIRES_MS = 1_767_225_600_000
ENGINE_LISTS = ("results", "prize_results", "errors")


@pytest.fixture(scope="module")
def engine_decoder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build("./internal/enginefixtures", tmp_path_factory.mktemp("go") / "enginefixtures")


def stored_document(state: dict[str, Any], version: int = 3, token: str = "a1b2c3d4") -> bytes:
    """The bytes the daemon keeps in Redis for `state` after its `version`-th save."""
    tail = f',"version":{version},"_token":"{token}","_expires":{EXPIRES_MS}}}'
    return encode_head(state) + tail.encode()


def engine_decode(decoder: Path, documents: list[bytes]) -> list[dict[str, Any]]:
    """Each document as the engine's json.Unmarshal reads it: {"state": ...} or {"error": ...}."""
    result = subprocess.run(
        [str(decoder), "decode"],
        input=b"\n".join(documents) + b"\n",
        capture_output=True,
        check=True,
        timeout=DECODE_TIMEOUT_S,
    )
    return [json.loads(line) for line in result.stdout.splitlines()]


def assert_engine_read(engine: dict[str, Any], state: dict[str, Any]) -> None:
    """The engine's struct holds every field it has, with the state's values; empty lists read as null."""
    assert "error" not in engine, engine
    read = engine["state"]
    assert set(read) == {
        "lock_key",
        "total_count",
        "completed_count",
        *ENGINE_LISTS,
        "start_time",
        "last_update_time",
    }
    for name, value in read.items():
        if name in ENGINE_LISTS:
            assert (value or []) == (state.get(name) or []), name
        else:
            assert value == state[name], name


def test_every_imported_fixture_decodes_into_the_engine_struct_once_stored(engine_decoder):
    manifest = json.loads((FIXTURES / "manifest.json").read_text())
    states = []
    for entry in manifest["fixtures"]:
        outcome = convert(entry["key"], (FIXTURES / entry["file"]).read_bytes())
        if isinstance(outcome, Converted):
            states.append({**outcome.state, "metadata": {"user_id": "42", "banner": "<summer & co>"}})
    assert len(states) == sum(entry["expect"] == "importable" for entry in manifest["fixtures"])
    decoded = engine_decode(engine_decoder, [stored_document(state) for state in states])
    assert len(decoded) == len(states)
    for engine, state in zip(decoded, states, strict=True):
        assert_engine_read(engine, state)


@settings(PROPERTY_SETTINGS, max_examples=40)
@given(state=valid_states(), version=st.integers(1, 2**63 - 1))
def test_any_stored_state_decodes_into_the_engine_struct(engine_decoder, state, version):
    state.pop("version", None)
    state["errors"] = []  # the failed-draw numbering rules are the sidecar's, not this test's subject
    [engine] = engine_decode(engine_decoder, [stored_document(state, version)])
    assert_engine_read(engine, state)


def test_engine_refuses_what_is_not_json_and_says_so(engine_decoder):
    [engine] = engine_decode(engine_decoder, [b'{"lock_key":"u","total_count":'])
    assert "error" in engine
    assert "state" not in engine


def test_what_a_real_save_leaves_in_redis_decodes_into_the_engine_struct(
    engine_decoder, client, new_state, rdb
):
    """Not a document built here: the bytes a daemon's save.lua wrote, read back from Redis, whatever
    its tail holds now (version, token, digest, expiry)."""
    prize = {"id": "gold", "name": "Gold <Dragon> & \u00e9", "probability": 0.1, "value": 500}
    state = new_state(lock_key="engine:real", completed_count=2, results=[7, 9])
    state_dict = {**state.to_dict(), "prize_results": [prize, prize]}
    client.save(state_dict)
    state_dict["completed_count"], state_dict["results"] = 3, [7, 9, 11]
    state_dict["prize_results"] = [prize, prize, prize]
    client.save(state_dict, expect_version=1)
    stored = rdb.get(f"lottery:state:{{engine:real}}:{state.operation_id}")
    assert stored.endswith(b"}") and b'"version":2' in stored
    [engine] = engine_decode(engine_decoder, [stored])
    assert_engine_read(engine, state_dict)
