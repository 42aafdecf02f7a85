"""Error codes and their classes (DESIGN §4, §7), the daemon Config and the default socket path."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from drawstate import errors as client_errors
from drawstate import protocol
from drawstate.errors import (
    ERROR_CLASSES,
    RETRYABLE,
    BaseUnknown,
    DeadlineExceeded,
    DrawStateCorrupted,
    DrawStateError,
    DurabilityNotMet,
    FrameTooLarge,
    InternalError,
    InvalidDrawState,
    InvalidRequest,
    NotFound,
    OperationClosed,
    OutcomeUnknown,
    Overloaded,
    RedisUnavailable,
    SidecarTimeout,
    SidecarUnavailable,
    StaleState,
    VersionConflict,
    error_from_wire,
)
from drawstate.limits import Limits
from drawstate.paths import default_socket_path
from drawstated import errors as daemon_errors
from drawstated.config import Config, redact_url

WIRE_CODES = [
    ("invalid_request", InvalidRequest, False),
    ("draw_state_corrupted", DrawStateCorrupted, False),
    ("version_conflict", VersionConflict, False),
    ("stale_state", StaleState, False),
    ("operation_closed", OperationClosed, False),
    ("not_found", NotFound, False),
    ("redis_unavailable", RedisUnavailable, True),
    ("deadline_exceeded", DeadlineExceeded, True),
    ("overloaded", Overloaded, True),
    ("durability_not_met", DurabilityNotMet, True),
    ("outcome_unknown", OutcomeUnknown, True),
    ("base_unknown", BaseUnknown, False),
    ("frame_too_large", FrameTooLarge, False),
    ("internal", InternalError, False),
    ("sidecar_unavailable", SidecarUnavailable, True),
    ("sidecar_timeout", SidecarTimeout, True),
]
#: Codes the Python client makes itself; they never appear on the wire.
CLIENT_ONLY = {"sidecar_unavailable", "sidecar_timeout"}


@pytest.mark.parametrize(("code", "cls", "retryable"), [pytest.param(*row, id=row[0]) for row in WIRE_CODES])
def test_wire_code_maps_to_its_class_with_the_right_retryable(
    code: str, cls: type[DrawStateError], retryable: bool
) -> None:
    assert ERROR_CLASSES[code] is cls
    assert cls.code == code
    assert cls.retryable is retryable
    assert RETRYABLE[code] is retryable
    assert issubclass(cls, DrawStateError)
    error = error_from_wire({"code": code, "message": "boom", "retryable": retryable})
    assert type(error) is cls
    assert (error.code, error.retryable) == (code, retryable)
    assert (error.message, str(error)) == ("boom", f"{code}: boom")


def test_every_code_has_a_class_and_no_class_is_missing() -> None:
    assert set(ERROR_CLASSES) == {row[0] for row in WIRE_CODES}


def test_protocol_codes_are_the_daemon_codes_and_sidecar_unavailable_is_client_only() -> None:
    protocol_codes = {
        value
        for name, value in vars(protocol).items()
        if name.isupper() and isinstance(value, str) and value in ERROR_CLASSES
    }
    assert protocol_codes == set(ERROR_CLASSES) - CLIENT_ONLY
    assert client_errors.CLIENT_ONLY_CODES == CLIENT_ONLY


def test_a_corrupted_state_the_caller_sent_is_a_value_error_not_stored_corruption() -> None:
    sent = error_from_wire({"code": "draw_state_corrupted", "message": "total_count", "source": "request"})
    assert isinstance(sent, InvalidDrawState) and isinstance(sent, ValueError)
    assert not isinstance(sent, DrawStateCorrupted)
    stored = error_from_wire({"code": "draw_state_corrupted", "message": "bad", "source": "stored"})
    assert type(stored) is DrawStateCorrupted


def test_error_from_wire_keeps_extra_fields_as_details() -> None:
    error = error_from_wire(
        {"code": "version_conflict", "message": "expected 3", "retryable": False, "stored_version": 4}
    )
    assert isinstance(error, VersionConflict)
    assert error.details == {"stored_version": 4}


def test_error_from_wire_of_an_unknown_code_keeps_its_name_and_retryable() -> None:
    error = error_from_wire({"code": "quota_exceeded", "message": "slow down", "retryable": True, "n": 1})
    assert type(error) is DrawStateError
    assert (error.code, error.retryable, error.message) == ("quota_exceeded", True, "slow down")
    assert error.details == {"n": 1}
    assert str(error) == "quota_exceeded: slow down"
    # The class keeps its defaults: the unknown code is set on the instance only.
    assert (DrawStateError.code, DrawStateError.retryable) == ("internal", False)


def test_error_from_wire_of_an_unknown_code_without_message_uses_that_code() -> None:
    error = error_from_wire({"code": "quota_exceeded"})
    assert (error.message, str(error)) == ("quota_exceeded", "quota_exceeded: quota_exceeded")


def test_error_from_wire_of_an_unknown_code_without_retryable_is_not_retryable() -> None:
    assert error_from_wire({"code": "future_thing", "message": "x"}).retryable is False


def test_error_from_wire_of_a_known_code_trusts_the_class_over_the_wire_flag() -> None:
    assert error_from_wire({"code": "overloaded", "retryable": False}).retryable is True


def test_error_from_wire_of_an_empty_map_is_internal() -> None:
    error = error_from_wire({})
    assert type(error) is InternalError
    assert (error.code, error.message, error.details) == ("internal", "internal", {})


def test_error_without_message_uses_its_code() -> None:
    assert str(NotFound()) == "not_found: not_found"


def test_all_client_errors_are_exported_from_the_errors_module() -> None:
    for cls in ERROR_CLASSES.values():
        assert getattr(client_errors, cls.__name__) is cls


@pytest.mark.parametrize(("code", "cls", "retryable"), [pytest.param(*r, id=r[0]) for r in WIRE_CODES[:-1]])
def test_daemon_request_error_round_trips_through_the_wire_map(
    code: str, cls: type[DrawStateError], retryable: bool
) -> None:
    wire = daemon_errors.RequestError(code, "boom", stored_version=2).to_wire()
    assert wire == {"code": code, "message": "boom", "retryable": retryable, "stored_version": 2}
    error = error_from_wire(wire)
    assert type(error) is cls
    assert error.details == {"stored_version": 2}


def test_daemon_error_reply_carries_the_request_id() -> None:
    reply = daemon_errors.error_reply(None, daemon_errors.invalid("no id"))
    assert reply == {
        "id": None,
        "ok": False,
        "error": {"code": "invalid_request", "message": "no id", "retryable": False},
    }


def test_daemon_internal_error_names_only_the_exception_type() -> None:
    error = daemon_errors.internal(RuntimeError("redis://:hunter2@host"))
    assert error.code == "internal"
    assert "hunter2" not in error.message
    assert "RuntimeError" in error.message


# --- Config ---------------------------------------------------------------------------


def make_config(**changes: object) -> Config:
    values: dict[str, object] = {"socket_path": Path("/run/test/d.sock"), "data_dir": Path("/var/test")}
    values.update(changes)
    return Config(**values)  # type: ignore[arg-type]


def test_config_repr_never_shows_redis_password() -> None:
    config = make_config(redis_password="hunter2")
    assert "hunter2" not in repr(config)
    assert "hunter2" not in str(config)
    assert "redis_password='***'" in repr(config)


def test_config_repr_without_password_shows_none() -> None:
    assert "redis_password=None" in repr(make_config())


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        pytest.param("redis://:hunter2@redis:6379/0", "redis://:***@redis:6379/0", id="password-only"),
        pytest.param(
            "redis://game:hunter2@redis:6379/0", "redis://game:***@redis:6379/0", id="user-password"
        ),
        pytest.param("rediss://game:hunter2@redis:6380", "rediss://game:***@redis:6380", id="tls"),
        pytest.param("redis://game:hun@ter2@redis:6379", "redis://game:***@redis:6379", id="at-in-password"),
        pytest.param("unix://:hunter2@/run/redis.sock", "unix://:***@/run/redis.sock", id="unix-socket"),
    ],
)
def test_config_repr_redacts_a_password_inside_redis_url(url: str, shown: str) -> None:
    assert redact_url(url) == shown
    text = repr(make_config(redis_url=url))
    assert "hunter2" not in text
    assert "ter2" not in text
    assert f"redis_url={shown!r}" in text


@pytest.mark.parametrize(
    "url",
    [
        pytest.param("unix:///run/redis.sock?db=0&password=hunter2", id="unix-query"),
        pytest.param("redis://redis:6379/0?password=hunter2", id="tcp-query"),
    ],
)
def test_config_repr_redacts_a_password_in_the_url_query(url: str) -> None:
    assert "hunter2" not in repr(make_config(redis_url=url))


@pytest.mark.parametrize(
    "url",
    [
        pytest.param(None, id="none"),
        pytest.param("", id="empty"),
        pytest.param("redis://redis:6379/0", id="no-credentials"),
        pytest.param("redis://game@redis:6379/0", id="user-without-password"),
        pytest.param("unix:///run/redis.sock?db=1", id="unix-socket"),
    ],
)
def test_redact_url_leaves_a_url_without_password_unchanged(url: str | None) -> None:
    assert redact_url(url) == url


@pytest.mark.parametrize(
    "mode",
    [
        pytest.param(0o666, id="0666"),
        pytest.param(0o664, id="0664"),
        pytest.param(0o662, id="0662"),
        pytest.param(0o661, id="0661"),
        pytest.param(0o777, id="0777"),
        pytest.param(0o607, id="0607"),
    ],
)
def test_config_rejects_world_accessible_socket_mode(mode: int) -> None:
    with pytest.raises(ValueError, match="world-accessible"):
        make_config(socket_mode=mode)


@pytest.mark.parametrize(
    "mode",
    [pytest.param(0o660, id="0660-default"), pytest.param(0o600, id="0600"), pytest.param(0o770, id="0770")],
)
def test_config_accepts_socket_mode_closed_to_others(mode: int) -> None:
    assert make_config(socket_mode=mode).socket_mode == mode


def test_config_default_socket_mode_is_0660() -> None:
    assert make_config().socket_mode == 0o660


@pytest.mark.parametrize(
    "prefix",
    [
        pytest.param("", id="empty"),
        pytest.param("lot{tery}", id="braces"),
        pytest.param("lot*", id="glob"),
        pytest.param("lot tery", id="space"),
        pytest.param("x" * 65, id="too-long"),
    ],
)
def test_config_rejects_bad_prefix(prefix: str) -> None:
    with pytest.raises(ValueError, match="prefix"):
        make_config(prefix=prefix)


def test_config_default_prefix_is_lottery() -> None:
    assert make_config().prefix == "lottery"


@pytest.mark.parametrize(
    ("frame", "state"),
    [
        pytest.param(512 * 1024, 512 * 1024, id="frame-equal-to-state"),
        pytest.param(1000, 2000, id="frame-below-state"),
    ],
)
def test_config_rejects_max_frame_bytes_not_above_max_state_bytes(frame: int, state: int) -> None:
    with pytest.raises(ValueError, match="max_frame_bytes"):
        make_config(max_frame_bytes=frame, limits=Limits(max_state_bytes=state))


def test_config_accepts_max_frame_bytes_above_max_state_bytes() -> None:
    config = make_config(max_frame_bytes=2001, limits=Limits(max_state_bytes=2000))
    assert config.max_frame_bytes == 2001


def test_config_defaults_let_a_state_at_its_cap_fit_in_a_frame() -> None:
    config = make_config()
    assert config.max_frame_bytes > config.limits.max_state_bytes


@pytest.mark.parametrize(
    "changes",
    [
        pytest.param({"ttl_s": 0}, id="ttl-zero"),
        pytest.param({"ttl_s": 30 * 24 * 3600 + 1}, id="ttl-over-max"),
        pytest.param({"log_format": "xml"}, id="log-format"),
        pytest.param({"durability": "fsync"}, id="durability"),
        pytest.param({"max_connections": 0}, id="max-connections"),
        pytest.param({"max_inflight_per_connection": 0}, id="max-inflight"),
        pytest.param({"redis_pool_size": 0}, id="pool-size"),
    ],
)
def test_config_rejects_out_of_range_settings(changes: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        make_config(**changes)


def test_config_is_frozen_and_replace_revalidates() -> None:
    config = make_config()
    with pytest.raises(AttributeError):
        config.prefix = "other"  # type: ignore[misc]
    assert config.replace(prefix="other").prefix == "other"
    with pytest.raises(ValueError, match="world-accessible"):
        config.replace(socket_mode=0o666)


def test_config_without_redis_url_is_embedded() -> None:
    assert make_config().embedded is True
    assert make_config(redis_url="redis://redis:6379").embedded is False


# --- default_socket_path --------------------------------------------------------------


def test_default_socket_path_prefers_drawstate_socket(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DRAWSTATE_SOCKET", "/srv/game/ds.sock")
    monkeypatch.setenv("XDG_RUNTIME_DIR", "/run/user/1000")
    assert default_socket_path() == Path("/srv/game/ds.sock")


def test_default_socket_path_falls_back_to_xdg_runtime_dir(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DRAWSTATE_SOCKET", raising=False)
    monkeypatch.setenv("XDG_RUNTIME_DIR", "/run/user/1000")
    assert default_socket_path() == Path("/run/user/1000/drawstate.sock")


def test_default_socket_path_falls_back_to_tmp_per_uid(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DRAWSTATE_SOCKET", raising=False)
    monkeypatch.delenv("XDG_RUNTIME_DIR", raising=False)
    assert default_socket_path() == Path(f"/tmp/drawstate-{os.getuid()}/drawstate.sock")


def test_default_socket_path_treats_empty_variables_as_unset(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DRAWSTATE_SOCKET", "")
    monkeypatch.setenv("XDG_RUNTIME_DIR", "")
    assert default_socket_path() == Path(f"/tmp/drawstate-{os.getuid()}/drawstate.sock")


def test_config_default_socket_path_reads_the_environment_at_construction(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("DRAWSTATE_SOCKET", "/srv/game/ds.sock")
    assert Config(data_dir=Path("/var/test")).socket_path == Path("/srv/game/ds.sock")
