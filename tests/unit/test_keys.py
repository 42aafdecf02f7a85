"""drawstated.keys: Redis key names of DESIGN §3, their parsing and the prefix rule."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from drawstate.model import check_lock_key, check_operation_id
from drawstated.keys import (
    audit_key,
    check_prefix,
    closed_key,
    index_key,
    parse_state_key,
    state_key,
    state_key_base,
    state_scan_pattern,
)
from tests.unit.strategies import PROPERTY_SETTINGS, lock_keys, operation_ids

# Colon-joined parts, so lock keys with leading, trailing and doubled colons come up often.
colon_lock_keys = (
    st.lists(st.text(st.sampled_from("ab:z *?[]\\é"), max_size=6), min_size=1, max_size=5)
    .map(":".join)
    .filter(bool)
)
prefixes = st.text(st.sampled_from("az09_.:-"), min_size=1, max_size=64)


def test_state_key_follows_design() -> None:
    assert state_key("lottery", "player:1001", "20240101_120000_deadbeef") == (
        "lottery:state:{player:1001}:20240101_120000_deadbeef"
    )


def test_state_key_base_is_the_state_key_without_operation_id() -> None:
    assert state_key_base("lottery", "player:1001") == "lottery:state:{player:1001}:"
    assert state_key_base("lottery", "p") + "op" == state_key("lottery", "p", "op")


def test_index_key_follows_design() -> None:
    assert index_key("lottery", "player:1001") == "lottery:ops:{player:1001}"


def test_closed_key_follows_design() -> None:
    assert closed_key("lottery", "player:1001", "op-1") == "lottery:closed:{player:1001}:op-1"


def test_audit_key_follows_design_and_has_no_hash_tag() -> None:
    assert audit_key("lottery") == "lottery:audit"
    assert "{" not in audit_key("lottery")


def test_state_scan_pattern_matches_only_state_keys_of_the_prefix() -> None:
    assert state_scan_pattern("lottery") == "lottery:state:{*"


def test_keys_use_the_given_prefix() -> None:
    assert state_key("game.eu:1", "p", "o") == "game.eu:1:state:{p}:o"
    assert index_key("game.eu:1", "p") == "game.eu:1:ops:{p}"


def redis_hash_tag(key: str) -> str:
    """The part of `key` Redis Cluster hashes: between the first '{' and the next '}', if non-empty."""
    start = key.find("{")
    if start == -1:
        return key
    end = key.find("}", start + 1)
    if end in (-1, start + 1):
        return key
    return key[start + 1 : end]


@pytest.mark.parametrize(
    "lock_key",
    [
        pytest.param("player:1001", id="colon"),
        pytest.param(":", id="only-colon"),
        pytest.param("a*b?[c]", id="glob-chars"),
        pytest.param("玩家", id="non-ascii"),
    ],
)
def test_state_index_and_tombstone_share_the_lock_key_hash_slot(lock_key: str) -> None:
    tags = {
        redis_hash_tag(state_key("eu:prod", lock_key, "op")),
        redis_hash_tag(index_key("eu:prod", lock_key)),
        redis_hash_tag(closed_key("eu:prod", lock_key, "op")),
    }
    assert tags == {lock_key}


# --- parse_state_key ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("lock_key", "operation_id"),
    [
        pytest.param("player:1001", "op", id="one-colon"),
        pytest.param("a:b:c:d", "20240101_120000_deadbeef", id="many-colons"),
        pytest.param(":lead", "op", id="leading-colon"),
        pytest.param("trail:", "op", id="trailing-colon"),
        pytest.param("::", "op", id="only-colons"),
        pytest.param("x:state:y", "op", id="looks-like-a-key"),
        pytest.param("玩家 1", "op", id="non-ascii-and-space"),
    ],
)
def test_parse_state_key_recovers_lock_key_and_operation_id(lock_key: str, operation_id: str) -> None:
    key = state_key("lottery", lock_key, operation_id)
    assert parse_state_key("lottery", key) == (lock_key, operation_id)


def test_parse_state_key_survives_a_prefix_with_colons() -> None:
    key = state_key("eu:prod", "player:1", "op")
    assert parse_state_key("eu:prod", key) == ("player:1", "op")


@PROPERTY_SETTINGS
@given(prefix=prefixes, lock_key=lock_keys | colon_lock_keys, operation_id=operation_ids)
def test_state_key_round_trips_any_valid_lock_key_and_operation_id(
    prefix: str, lock_key: str, operation_id: str
) -> None:
    check_prefix(prefix)
    check_lock_key(lock_key)
    check_operation_id(operation_id)
    key = state_key(prefix, lock_key, operation_id)
    assert parse_state_key(prefix, key) == (lock_key, operation_id)
    assert redis_hash_tag(key) == lock_key


@pytest.mark.parametrize(
    "key",
    [
        pytest.param("", id="empty"),
        pytest.param("lottery:state:player:op", id="no-hash-tag"),
        pytest.param("lottery:state:{}:op", id="empty-lock-key"),
        pytest.param("lottery:state:{player}:", id="empty-operation-id"),
        pytest.param("lottery:state:{player}", id="no-operation-id"),
        pytest.param("lottery:state:{player}op", id="no-colon-after-tag"),
        pytest.param("lottery:state:{player:op", id="unclosed-tag"),
        pytest.param("lottery:ops:{player}", id="index-key"),
        pytest.param("lottery:closed:{player}:op", id="tombstone-key"),
        pytest.param("lottery:audit", id="audit-key"),
        pytest.param("other:state:{player}:op", id="other-prefix"),
        pytest.param("lottery2:state:{player}:op", id="longer-prefix"),
        pytest.param("lotter:state:{player}:op", id="shorter-prefix"),
    ],
)
def test_parse_state_key_rejects_malformed_key(key: str) -> None:
    with pytest.raises(ValueError, match="key"):
        parse_state_key("lottery", key)


# --- check_prefix ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "prefix",
    [
        pytest.param("lottery", id="default"),
        pytest.param("a", id="one-char"),
        pytest.param("x" * 64, id="64-chars"),
        pytest.param("game.eu-1:prod_2", id="dots-dashes-colons-underscores"),
    ],
)
def test_check_prefix_accepts_plain_prefix(prefix: str) -> None:
    assert check_prefix(prefix) == prefix


@pytest.mark.parametrize(
    "prefix",
    [
        pytest.param("", id="empty"),
        pytest.param("x" * 65, id="65-chars"),
        pytest.param("lot{tery}", id="braces"),
        pytest.param("{lottery", id="open-brace"),
        pytest.param("lottery}", id="close-brace"),
        pytest.param("lot*", id="glob-star"),
        pytest.param("lot?", id="glob-question"),
        pytest.param("lot[ab]", id="glob-class"),
        pytest.param("lot\\*", id="glob-escape"),
        pytest.param("lot tery", id="space"),
        pytest.param("lottery\n", id="trailing-newline"),
        pytest.param("lötterie", id="non-ascii"),
    ],
)
def test_check_prefix_rejects_braces_glob_and_odd_characters(prefix: str) -> None:
    with pytest.raises(ValueError, match="invalid key prefix"):
        check_prefix(prefix)
