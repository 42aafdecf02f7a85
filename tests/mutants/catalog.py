"""The mutants: each breaks one invariant by an exact textual edit, and names the tests that must notice.

A mutant's name is the invariant it breaks (kebab-case, so `python -m tests.mutants ttl` picks every
`ttl-*`). Its edits must each match its file exactly once, or the runner reports an error: when
the code moves, the catalog is updated with it, never silently left behind. Its tests are pytest
node ids (or files), kept to the few that pin the invariant, so one mutant runs in seconds.

When a new invariant is added, add its mutant here in the same change (docs/testing.md says how).
"""

from __future__ import annotations

from dataclasses import dataclass

#: What `DRAWSTATE_TEST_TOPOLOGIES` a mutant's tests run under unless it says otherwise.
BOTH_TOPOLOGIES = "standalone,cluster"


@dataclass(frozen=True, slots=True)
class Edit:
    """Replace `old` (which must occur exactly once in the file) by `new`."""

    old: str
    new: str


@dataclass(frozen=True, slots=True)
class Mutant:
    name: str
    #: The invariant broken, in one line.
    breaks: str
    file: str
    edits: tuple[Edit, ...]
    tests: tuple[str, ...]
    #: A -k expression narrowing `tests`, when node ids would be clumsier.
    keyword: str | None = None
    topologies: str = BOTH_TOPOLOGIES


SAVE_LUA = "daemon/drawstated/redis/lua/save.lua"
RULES = "client/drawstate/rules.py"
ACCEPTED = "tests/unit/test_accepted.py"
INCREMENTAL = "tests/integration/test_incremental_saves.py::"
CLOSE_LUA = "daemon/drawstated/redis/lua/close.lua"
OUTCOME_LUA = "daemon/drawstated/redis/lua/outcome.lua"
OPS = "tests/integration/test_ops.py::"
ERRORS = "tests/integration/test_errors.py::"
IDEMPOTENCY = "tests/integration/test_idempotency_and_pipelining.py::"
LOST_REPLY = "tests/integration/test_multidraw_lost_reply.py::"
AIO = "tests/integration/test_aio.py::"
APPENDS = "tests/integration/test_append_saves.py::"
OUTCOMES = "tests/integration/test_outcomes.py::"
OUTCOMES_FAILURES = "tests/integration/test_outcomes_failures.py::"
MULTIDRAW = "tests/integration/test_multidraw.py::"
MULTIDRAW_UNIT = "tests/unit/test_multidraw_unit.py::"
JOURNAL = "tests/integration/test_journal_durability.py::"
DEFERRED_APPLIED_TEST = (
    OUTCOMES_FAILURES + "test_a_deferred_rollback_that_redis_applied_is_recorded_as_the_rollback_it_was"
)
DEFERRED_APPLIED_AFTER_RESTART_TEST = (
    OUTCOMES_FAILURES
    + "test_a_deferred_rollback_that_redis_applied_is_paid_by_the_stream_when_the_next_daemon_applies_it"
)
JOURNAL_RECORD_TEST = (
    JOURNAL + "test_the_record_and_its_new_directory_entry_are_fsynced_before_the_deferred_reply"
)
JOURNAL_REWRITE_TEST = (
    JOURNAL + "test_a_journal_rewrite_fsyncs_the_new_file_before_the_rename_and_the_directory_after"
)
ONE_DAEMON = "tests/integration/test_one_daemon.py::"

MUTANTS: tuple[Mutant, ...] = (
    # --- save.lua: what a save may change -------------------------------------------
    Mutant(
        "tombstone",
        "a save never revives an ended operation (save.lua checks its tombstone first)",
        SAVE_LUA,
        (
            Edit(
                "if closed_kind then\n  return {'closed', closed_kind}\nend",
                "if false then\n  return {'closed', closed_kind}\nend",
            ),
        ),
        (
            ERRORS + "test_save_after_rollback_is_operation_closed",
            ERRORS + "test_save_meeting_a_tombstone_says_what_closed_it",
            OUTCOMES
            + "test_a_rollback_of_an_operation_never_stored_is_final_with_nothing_removed_and_refuses_a_late_save",  # noqa: E501  # a test's whole name, kept greppable
        ),
    ),
    Mutant(
        "token-replay",
        "a save resent with its token is answered as the first was, and writes nothing",
        SAVE_LUA,
        (Edit("  if stored_token == token then\n", "  if false then\n"),),
        (
            IDEMPOTENCY + "test_save_retried_after_a_lost_reply_returns_the_first_reply",
            IDEMPOTENCY + "test_a_save_resent_with_its_token_returns_the_first_version_and_writes_nothing",
            LOST_REPLY + "test_first_save_whose_reply_is_lost_is_resent_by_the_daemon_and_every_draw_follows",
        ),
    ),
    Mutant(
        "draw-prefix-results",
        "recorded results are immutable: the stored list is a prefix of the new one",
        SAVE_LUA,
        (Edit("ipairs({'results', 'prize_results', 'errors'})", "ipairs({'prize_results', 'errors'})"),),
        (
            ERRORS + "test_rewriting_a_recorded_draw_is_stale_state",
            INCREMENTAL + "test_rewriting_a_recorded_draw_to_a_text_of_the_same_length_is_stale_state",
            INCREMENTAL + "test_a_daemon_remembering_nothing_checks_every_save_whole",
        ),
    ),
    Mutant(
        "draw-prefix-prizes",
        "recorded prize_results are immutable: the stored list is a prefix of the new one",
        SAVE_LUA,
        (Edit("ipairs({'results', 'prize_results', 'errors'})", "ipairs({'results', 'errors'})"),),
        (
            ERRORS + "test_rewriting_a_recorded_prize_is_stale_state",
            INCREMENTAL + "test_rewriting_a_recorded_prize_to_a_text_of_the_same_length_is_stale_state",
        ),
    ),
    Mutant(
        "draw-prefix-fast-path",
        "the text comparison of recorded draws (a state this daemon wrote) refuses a rewrite",
        SAVE_LUA,
        (
            Edit(
                "local function extends(old, new)\n",
                "local function extends(old, new)\n  do return true end\n",
            ),
        ),
        (
            ERRORS + "test_rewriting_a_recorded_draw_is_stale_state",
            ERRORS + "test_rewriting_a_recorded_prize_is_stale_state",
        ),
    ),
    Mutant(
        "failed-draws-append-only",
        "failed draws (errors) are append-only like results",
        SAVE_LUA,
        (Edit("ipairs({'results', 'prize_results', 'errors'})", "ipairs({'results', 'prize_results'})"),),
        (
            OUTCOMES + "test_failed_draws_are_append_only_like_results",
            APPENDS + "test_a_changed_recorded_draw_or_fixed_field_is_sent_whole_and_refused",
        ),
    ),
    Mutant(
        "failed-draw-numbered-after",
        "a failed draw is numbered after every draw already made: a granted one is never marked failed",
        SAVE_LUA,
        (Edit("if first_new and first_new <= stored_completed + stored_errors then", "if false then"),),
        (
            OUTCOMES + "test_a_save_may_not_mark_a_granted_draw_failed",
            OUTCOMES + "test_a_failure_appended_after_earlier_failures_is_numbered_after_every_draw",
        ),
    ),
    Mutant(
        "completed-count",
        "completed_count never decreases",
        SAVE_LUA,
        (Edit("if completed_count < stored_completed then", "if false then"),),
        (
            ERRORS + "test_lower_completed_count_with_the_same_draws_is_stale_state",
            ERRORS + "test_progress_going_backwards_is_stale_state",
        ),
    ),
    Mutant(
        "expect-version",
        "a save expecting another version than the stored one is a version_conflict (one resumer wins)",
        SAVE_LUA,
        (
            Edit(
                "  if (stored_raw == nil and expected ~= 0)"
                " or (stored_raw ~= nil and expected ~= stored_version) then\n",
                "  if false then\n",
            ),
        ),
        (
            ERRORS + "test_version_conflict_carries_the_stored_version",
            ERRORS + "test_expect_version_on_missing_state_is_a_conflict",
            MULTIDRAW + "test_two_concurrent_resumers_exactly_one_wins_the_other_gets_version_conflict",
        ),
    ),
    Mutant(
        "immutable-fields",
        "total_count, start_time and metadata are fixed by the first save (the price lives there)",
        SAVE_LUA,
        (Edit("ipairs({'total_count', 'start_time', 'metadata'})", "ipairs({})"),),
        (
            OUTCOMES + "test_a_save_that_changes_the_price_or_identity_gets_stale_state_naming_the_field",
            APPENDS + "test_a_changed_recorded_draw_or_fixed_field_is_sent_whole_and_refused",
        ),
    ),
    Mutant(
        "immutable-fields-metadata",
        "metadata (the price paid) is fixed by the first save",
        SAVE_LUA,
        (Edit("ipairs({'total_count', 'start_time', 'metadata'})", "ipairs({'total_count', 'start_time'})"),),
        (
            OUTCOMES + "test_a_save_that_changes_the_price_or_identity_gets_stale_state_naming_the_field",
            APPENDS + "test_a_changed_recorded_draw_or_fixed_field_is_sent_whole_and_refused",
        ),
    ),
    # --- expiry -------------------------------------------------------------------------
    Mutant(
        "ttl-key-expiry",
        "the state key is written with an expiry (ttl + grace), refreshed on every save",
        SAVE_LUA,
        (Edit("'}',\n  'PX', key_ttl_ms)\n", "'}')\n"),),
        (OPS + "test_state_key_ttl_is_refreshed_on_every_save",),
    ),
    Mutant(
        "ttl-expiry-on-read",
        "a state past its `_expires` is never returned by load or pending, swept or not",
        "daemon/drawstated/ops/states.py",
        (
            Edit(
                "    if expires is not None and expires <= unix_ms():\n        return None\n    return state",
                "    return state",
            ),
            Edit(
                "    if expires is not None and expires <= unix_ms():\n        return None\n    return {",
                "    return {",
            ),
        ),
        (
            OPS + "test_state_expires_after_its_ttl",
            MULTIDRAW + "test_abandoned_operation_disappears_from_pending_after_its_ttl",
        ),
    ),
    Mutant(
        "ttl-expiry-on-save",
        "a save to an operation past its `_expires` expires it there and is refused",
        SAVE_LUA,
        (Edit("    if tonumber(expires) <= now then\n", "    if false then\n"),),
        (
            OUTCOMES + "test_a_save_after_the_ttl_expires_the_operation_itself_before_any_sweep",
            APPENDS + "test_an_append_to_an_operation_past_its_ttl_is_refused_as_expired",
        ),
    ),
    Mutant(
        "ttl-expiry-on-close",
        "a rollback or complete of an operation past its `_expires` expires it there: operation_closed",
        CLOSE_LUA,
        (Edit("  if expires and expires <= now then\n", "  if false then\n"),),
        (OUTCOMES + "test_a_rollback_or_complete_after_the_ttl_gets_closed_by_expire_before_any_sweep",),
    ),
    Mutant(
        "expire-sweep",
        "an operation past its ttl is expired by a sweeper, with one expire event",
        "daemon/drawstated/redis/lua/expire.lua",
        (Edit("if not due then\n", "if true then\n"),),
        (
            OUTCOMES
            + "test_an_operation_past_its_ttl_gets_one_expire_event_with_its_last_state_within_ttl_plus_interval",  # noqa: E501  # a test's whole name, kept greppable
            OUTCOMES + "test_several_sweeping_daemons_write_exactly_one_expire_per_operation",
        ),
    ),
    Mutant(
        "expire-sweep-walk",
        "the sweeper hands every state due to expire.lua",
        "daemon/drawstated/storage/sweeper.py",
        (Edit("expired += await self._expire_one(name.decode(), early_ms)", "expired += 0"),),
        (
            OUTCOMES
            + "test_an_operation_past_its_ttl_gets_one_expire_event_with_its_last_state_within_ttl_plus_interval",  # noqa: E501  # a test's whole name, kept greppable
        ),
    ),
    # --- endings: close.lua and the outcome stream --------------------------------------
    Mutant(
        "rollback-delete",
        "an ended operation's state is removed with it (rollback, complete)",
        OUTCOME_LUA,
        (Edit("  if state_raw then\n    redis.call('DEL', k.state)\n  end\n", ""),),
        (
            OPS + "test_rollback_returns_removed_state_for_refund",
            OPS + "test_complete_removes_the_state_and_reports_whether_it_existed",
        ),
    ),
    Mutant(
        "rollback-token",
        "after a rollback, any other caller (another token) gets operation_closed and must not refund",
        CLOSE_LUA,
        (Edit("  if kind == 'rollback' and t['token'] ~= token then\n", "  if false then\n"),),
        (
            OUTCOMES + "test_a_second_caller_after_a_rollback_gets_operation_closed_and_must_not_refund",
            OUTCOMES_FAILURES
            + "test_a_sidecar_restart_between_close_and_confirm_answers_the_resent_rollback_the_same",
        ),
    ),
    Mutant(
        "rollback-token-repeat",
        "a rollback resent with its own token gets the first answer again",
        CLOSE_LUA,
        (Edit("  if kind == 'rollback' and t['token'] ~= token then\n", "  if kind == 'rollback' then\n"),),
        (
            OUTCOMES + "test_a_rollback_repeated_with_its_token_gets_the_identical_answer_and_one_event",
            OPS + "test_rollback_audit_event_is_written_once",
        ),
    ),
    Mutant(
        "ending-kind",
        "an operation ends once: a complete after a rollback (or the reverse) is operation_closed",
        CLOSE_LUA,
        (Edit("  if closed_kind ~= kind then\n", "  if false then\n"),),
        (
            ERRORS + "test_complete_after_rollback_and_rollback_after_complete_are_refused",
            OUTCOMES + "test_after_a_final_rollback_no_save_complete_or_resume_succeeds_through_any_daemon",
            OUTCOMES_FAILURES
            + "test_a_deferred_rollback_that_lost_to_a_completion_on_another_host_pays_no_one_and_notes_it",
        ),
    ),
    Mutant(
        "deferred-rollback-refund",
        "a deferred rollback whose earlier attempt reached Redis is refunded by the stream, not its caller",
        CLOSE_LUA,
        (Edit("  if mode == 'deferred' and t['final'] == 'p' then\n", "  if false then\n"),),
        (DEFERRED_APPLIED_TEST, DEFERRED_APPLIED_AFTER_RESTART_TEST),
    ),
    Mutant(
        "caller-refund-decided-with-reply-in-hand",
        "a caller's refund is decided only once the daemon holds close.lua's reply, never inside it",
        CLOSE_LUA,
        (Edit("  final = 'p'\n", "  final = '1'\n"),),
        (DEFERRED_APPLIED_TEST, DEFERRED_APPLIED_AFTER_RESTART_TEST),
    ),
    Mutant(
        "stream-refund-decided-with-removal",
        "a rollback refunded by the stream is decided by close.lua, with the removal (one round trip)",
        CLOSE_LUA,
        (
            Edit(
                "if kind == 'rollback' and mode == 'direct' and payer ~= 'stream' then\n",
                "if kind == 'rollback' and mode == 'direct' then\n",
            ),
        ),
        (
            OUTCOMES_FAILURES
            + "test_a_rollback_refunded_by_the_stream_is_decided_with_the_removal_and_sends_no_settle",
            OUTCOMES_FAILURES
            + "test_a_rollback_refunded_by_the_stream_whose_reply_was_lost_is_paid_by_the_stream_once",
        ),
    ),
    Mutant(
        "stream-refund-on-an-old-tombstone",
        "a rollback refunded by the stream is not told to pay, even at a tombstone from before tokens",
        CLOSE_LUA,
        (Edit("return {'replay', payer == 'stream' and '0' or '1',", "return {'replay', '1',"),),
        (
            "tests/integration/test_stored_states.py::"
            "test_a_rollback_meeting_a_tombstone_of_the_version_before_tokens_gets_that_versions_answer",
        ),
    ),
    Mutant(
        "pending-refund-to-stream",
        "a refund decision a dead daemon left pending goes to the outcome stream",
        "daemon/drawstated/redis/lua/outbox.lua",
        (
            Edit(
                "if mode == 'sweeper' and redis.call('HGET', tomb, 'final') == 'p' then\n", "if false then\n"
            ),
        ),
        (
            OUTCOMES_FAILURES + "test_a_refund_decision_a_dead_daemon_left_pending_goes_to_the_stream",
            OUTCOMES_FAILURES + "test_a_refund_decision_a_live_daemon_could_not_confirm_goes_to_the_stream",
        ),
    ),
    Mutant(
        "refund-decision-before-event",
        "no outcome event is written while who refunds is undecided (a direct rollback before settle)",
        OUTCOME_LUA,
        (Edit("  if t['final'] == 'p' or stream == nil then\n", "  if stream == nil then\n"),),
        (
            OUTCOMES + "test_outcome_event_carries_what_a_refund_needs",
            OPS + "test_rollback_audit_event_is_written_once",
        ),
    ),
    Mutant(
        "outcome-event-in-script",
        "every ending writes its outcome event (the closing script, where the stream shares its node)",
        OUTCOME_LUA,
        (
            Edit(
                "  local added = redis.pcall('XADD', stream, '*', unpack(event_fields(t)))\n",
                "  local added = {}\n",
            ),
        ),
        (
            OUTCOMES + "test_every_ending_writes_exactly_one_terminal_event",
            OUTCOMES + "test_outcome_event_carries_what_a_refund_needs",
            MULTIDRAW + "test_audit_stream_holds_one_event_per_rollback_and_complete_with_the_right_counts",
        ),
    ),
    Mutant(
        "outcome-event-by-daemon",
        "every ending writes its outcome event (the daemon or a sweeper, where the script could not)",
        "daemon/drawstated/storage/stream.py",
        (Edit("    await stream.append(outcome, deadline)\n", ""),),
        (
            OUTCOMES + "test_every_ending_writes_exactly_one_terminal_event",
            OUTCOMES_FAILURES + "test_an_ending_whose_event_a_dead_daemon_never_wrote_reaches_the_stream",
        ),
    ),
    Mutant(
        "stream-trim-owed",
        "trimming the outcome stream never drops an event a consumer group still owes",
        "daemon/drawstated/redis/lua/trim.lua",
        (Edit("if floor ~= nil and older(floor, threshold) then\n", "if false then\n"),),
        (
            OUTCOMES_FAILURES + "test_the_stream_never_drops_an_event_a_group_still_owes",
            "tests/integration/test_metrics.py::test_a_consumer_group_holding_the_outcome_stream_over_its_cap_is_a_gauge_and_one_warning",
        ),
    ),
    Mutant(
        "outcomes-ack-after-handler",
        "iter_outcomes acknowledges an event only once the handler that got it returned",
        "client/drawstate/client.py",
        (
            Edit(
                "                yield event\n                self.ack(group, [event.id])\n",
                "                self.ack(group, [event.id])\n                yield event\n",
            ),
        ),
        (
            OUTCOMES + "test_iter_outcomes_acknowledges_only_after_the_handler_returns",
            "tests/integration/test_cli_outcomes.py::test_refund_worker_parks_a_rollback_of_an_unreadable_state_and_acknowledges_it_only_once_parked",
        ),
    ),
    Mutant(
        "refund-owed",
        "a refund a rollback caller was told to pay is never owed by the refund worker too",
        "client/drawstate/results.py",
        (
            Edit(
                "self.existed and not self.refunded_by_caller and self.ungranted_count",
                "self.existed and self.ungranted_count",
            ),
        ),
        (
            OUTCOMES + "test_outcome_event_carries_what_a_refund_needs",
            "tests/integration/test_cli_outcomes.py::test_refund_worker_pays_each_owed_refund_once_and_skips_what_callers_paid",
        ),
    ),
    # --- the deferred-rollback journal --------------------------------------------------
    Mutant(
        "journal-replay",
        "rollbacks deferred before a restart are replayed from the journal at start",
        "daemon/drawstated/server/process.py",
        (Edit("        self.cleanup.replay_journal()\n", ""),),
        (
            "tests/integration/test_redis_outage.py::test_deferred_rollback_survives_a_daemon_restart",
            MULTIDRAW
            + "test_rollback_during_a_redis_outage_is_deferred_survives_a_daemon_kill_and_applies_when_redis_returns",  # noqa: E501  # a test's whole name, kept greppable
        ),
    ),
    Mutant(
        "hidden-from-read",
        "a read never returns an operation whose rollback was deferred when the read began",
        "daemon/drawstated/deferred.py",
        (Edit("return key in self._at_start or key in self._live", "return key in self._live"),),
        ("tests/unit/test_hidden_from_read.py",),
    ),
    Mutant(
        "journal-fsync-record",
        "a deferred rollback's record is fsynced before the caller hears `deferred`",
        "daemon/drawstated/journal.py",
        (
            Edit(
                "            _write_all(fd, line)\n            os.fsync(fd)\n",
                "            _write_all(fd, line)\n",
            ),
        ),
        (JOURNAL_RECORD_TEST,),
    ),
    Mutant(
        "journal-fsync-directory",
        "a new journal's directory entry is fsynced before the caller hears `deferred`",
        "daemon/drawstated/journal.py",
        (Edit("            if created:\n                fsync_dir(path.parent)\n", ""),),
        (JOURNAL_RECORD_TEST,),
    ),
    Mutant(
        "journal-fsync-rewrite",
        "a rewritten journal is fsynced before the rename",
        "daemon/drawstated/journal.py",
        (Edit("        _write_all(fd, lines)\n        os.fsync(fd)\n", "        _write_all(fd, lines)\n"),),
        (JOURNAL_REWRITE_TEST,),
    ),
    Mutant(
        "journal-fsync-rename",
        "a journal's rename over the old one is made durable (fsync of the directory)",
        "daemon/drawstated/journal.py",
        (Edit("    os.replace(tmp, path)\n    fsync_dir(path.parent)\n", "    os.replace(tmp, path)\n"),),
        (JOURNAL_REWRITE_TEST,),
    ),
    Mutant(
        "journal-fsync-emptied",
        "a journal emptied in place (every rollback applied) is fsynced",
        "daemon/drawstated/journal.py",
        (Edit("        os.ftruncate(fd, 0)\n        os.fsync(fd)\n", "        os.ftruncate(fd, 0)\n"),),
        (JOURNAL_RECORD_TEST,),
    ),
    # --- Redis connections and topology -------------------------------------------------
    Mutant(
        "durability-wait",
        "a replicated save that too few replicas acknowledged is durability_not_met, not ok",
        "daemon/drawstated/ops/save.py",
        (Edit("if acked is None or acked < min_replicas:", "if acked is None:"),),
        (ERRORS + "test_replicated_save_without_replicas_is_durability_not_met",),
    ),
    Mutant(
        "transient-errors",
        "outages and slots in flux are retried within the deadline, answers are not",
        "daemon/drawstated/redis/retry.py",
        (
            Edit(
                "def is_transient(exc: BaseException) -> bool:\n",
                "def is_transient(exc: BaseException) -> bool:\n    return False\n",
            ),
        ),
        (
            "tests/unit/test_retry.py",
            "tests/integration/test_redis_outage.py::test_killed_redis_gives_a_retryable_error_within_the_deadline_then_recovers",
        ),
    ),
    Mutant(
        "readonly",
        "a connection that answers READONLY (a demoted master) is retired; saves go to the new master",
        "daemon/drawstated/redis/errors.py",
        (Edit("class ReadOnlyError(DemotedReply):", "class ReadOnlyError(RetryableReply):"),),
        (
            "tests/integration/test_sentinel.py::test_connections_to_a_master_demoted_while_alive_are_retired_and_saves_keep_their_deadline",
            "tests/unit/test_autopipeline.py::test_a_demoted_connection_is_retired_and_a_new_one_takes_the_next_batch",
            "tests/unit/test_resp_protocol.py::test_a_demoted_master_takes_nothing_new_and_closes_once_in_flight_replies_are_in",
        ),
    ),
    Mutant(
        "ask",
        "the cluster router follows ASK (with ASKING) to a slot's importing node, not only MOVED",
        "daemon/drawstated/redis/cluster.py",
        (
            Edit(
                "if isinstance(error, Redirect) and redirects",
                "if isinstance(error, Redirect) and not isinstance(error, AskError) and redirects",
            ),
        ),
        (
            "tests/integration/test_cluster.py::test_reads_of_a_lock_key_on_a_half_migrated_slot_follow_ask_within_one_deadline",
            "tests/integration/test_cluster.py::test_writes_on_a_half_migrated_slot_reach_the_target_stay_retryable_and_land_once_it_settles",
        ),
    ),
    # --- saves that send only what they add ---------------------------------------------------
    Mutant(
        "append-base-checked",
        "a save sending only its new draws is spliced into the state its base names, never another",
        "daemon/drawstated/ops/save.py",
        (Edit('if previous is None or previous.digest != append["base"]:', "if previous is None:"),),
        (
            APPENDS + "test_a_save_between_from_another_client_makes_the_next_append_a_whole_save",
            APPENDS + "test_the_daemon_answers_appends_it_cannot_place_with_clear_codes",
            APPENDS + "test_randomized_saves_store_exactly_what_each_game_was_told_saved",
        ),
    ),
    Mutant(
        "append-splice-exact",
        "a spliced head is byte for byte the whole state's head",
        "daemon/drawstated/codec.py",
        (
            Edit(
                '(view[start : start + known], b",", new) if new', "(view[start : start + known], new) if new"
            ),
        ),
        (
            "tests/unit/test_appended.py",
            APPENDS
            + "test_a_drawstate_saved_draw_by_draw_sends_only_its_new_draws_and_stores_the_whole_state",
        ),
    ),
    Mutant(
        "append-not-a-list-refused",
        "an append's draw list that is not a list is refused as in a whole state, not taken as none",
        "daemon/drawstated/ops/accepted.py",
        (
            Edit(
                "[[] if append.get(name) is None else append.get(name) for name in DRAW_LISTS]",
                "[append.get(name) or [] for name in DRAW_LISTS]",
            ),
        ),
        (
            "tests/unit/test_appended.py::test_a_draw_list_that_is_not_a_list_is_refused_as_in_the_whole_state",
        ),
        topologies="standalone",
    ),
    Mutant(
        "client-save-snapshot",
        "every request of one save, and what the client remembers of it, is the state as the save began",
        "client/drawstate/appends.py",
        (Edit("self._sent = state.copy() if", "self._sent = state if"),),
        (
            APPENDS
            + "test_a_state_changed_while_its_save_is_under_way_is_saved_as_it_was_when_the_save_began",
        ),
    ),
    Mutant(
        "client-append-only-extensions",
        "a client sends only new draws only for a state that keeps every draw and fixed field it saved",
        "client/drawstate/appends.py",
        (Edit("return entry if entry is not None and _extends(entry[0], sent) else None", "return entry"),),
        (
            APPENDS + "test_a_changed_recorded_draw_or_fixed_field_is_sent_whole_and_refused",
            APPENDS + "test_randomized_saves_store_exactly_what_each_game_was_told_saved",
        ),
    ),
    Mutant(
        "aio-dead-connection-replaced",
        "an asyncio client never sends on a connection it found dead: the next call opens another",
        "client/drawstate/aio/connection.py",
        (
            Edit(
                "return self._closed is not None or self._writer.is_closing()",
                "return self._closed is not None",
            ),
            Edit(
                "            if self._closed is None:\n                self._fail_all(exc)",
                "            if False:\n                pass",
            ),
        ),
        (AIO + "test_an_idle_connection_a_restarted_daemon_closed_is_replaced_on_the_next_call",),
        topologies="standalone",
    ),
    # --- the client -------------------------------------------------------------------------
    Mutant(
        "client-rollback-resent",
        "a rollback the client sent more than once never answers deferred: that would leave no one to pay",
        "client/drawstate/ops.py",
        (Edit('if sends > 1 and result.cleanup == "deferred":', "if False:"),),
        (OUTCOMES_FAILURES + "test_a_rollback_the_client_resent_is_never_answered_deferred",),
    ),
    Mutant(
        "client-resend",
        "the client resends a request once on a fresh connection when the old one broke",
        "client/drawstate/client.py",
        (Edit("            if fresh or time.monotonic() >= deadline:\n", "            if True:\n"),),
        (
            IDEMPOTENCY
            + "test_client_resends_once_when_the_connection_breaks_after_the_daemon_read_the_save",
            IDEMPOTENCY + "test_client_reconnects_after_the_daemon_restarts",
        ),
    ),
    Mutant(
        "aio-client-resend",
        "the asyncio client resends a request once on a new connection when the old one broke",
        "client/drawstate/aio/client.py",
        (Edit("            if fresh or time.monotonic() >= deadline:\n", "            if True:\n"),),
        (AIO + "test_a_call_whose_connection_breaks_after_it_went_out_is_sent_again_on_a_new_one",),
    ),
    Mutant(
        "aio-reply-by-id",
        "the asyncio client hands each reply to the call with its id, and drops replies nobody waits for",
        "client/drawstate/aio/connection.py",
        (
            Edit(
                "waiting = self._waiting.get(request_id) if type(request_id) is int else None",
                "waiting = next(iter(self._waiting.values()), None)",
            ),
        ),
        (
            AIO + "test_calls_abandoned_by_their_callers_leave_every_other_reply_to_its_own_call",
            AIO + "test_a_call_cancelled_in_the_middle_of_a_pipelined_batch_leaves_the_connection_in_step",
        ),
    ),
    Mutant(
        "multidraw-token-resend",
        "MultiDraw resends a save with the token it first went out with",
        "client/drawstate/multidraw.py",
        (Edit("token=plan.token,", 'token=__import__("secrets").token_hex(8),'),),
        (
            MULTIDRAW_UNIT
            + "test_a_retryable_save_failure_is_retried_with_the_same_token_and_expected_version",
            LOST_REPLY + "test_first_save_whose_reply_is_lost_is_resent_by_the_game_and_every_draw_follows",
        ),
    ),
    Mutant(
        "multidraw-token-record-again",
        "recording a draw again after its save failed resends that save with its token",
        "client/drawstate/session.py",
        (
            Edit(
                "return PlannedSave(previous.state, previous.token, expect)",
                "return PlannedSave(previous.state, new_token(), expect)",
            ),
        ),
        (
            MULTIDRAW_UNIT
            + "test_recording_the_same_draw_after_a_failed_save_resends_that_save_with_its_token",
            LOST_REPLY
            + "test_a_draw_recorded_again_after_its_lost_save_failed_every_attempt_finishes_without_conflict",
        ),
    ),
    Mutant(
        "multidraw-token-failed-draw-again",
        "recording a failed draw again after its save failed resends that save, whatever its timestamp",
        "client/drawstate/session.py",
        (Edit('[{**error, "timestamp": 0} for error in data["errors"]]', 'data["errors"]'),),
        (
            LOST_REPLY
            + "test_a_failed_draw_recorded_again_after_its_lost_save_failed_every_attempt_is_not_a_conflict",
        ),
        topologies="standalone",
    ),
    Mutant(
        "multidraw-token-cancelled-save",
        "a save whose task was cancelled mid-way is resent with its token when the draw is recorded again",
        "client/drawstate/aio/multidraw.py",
        (Edit("        except BaseException:\n            self.save_interrupted(plan)\n", ""),),
        (LOST_REPLY + "test_an_asyncio_record_cancelled_mid_save_is_resent_with_its_token",),
        topologies="standalone",
    ),
    Mutant(
        "multidraw-token-interrupted-save",
        "a save interrupted after it left is resent with its token when the draw is recorded again",
        "client/drawstate/multidraw.py",
        (Edit("        except BaseException:\n            self.save_interrupted(plan)\n", ""),),
        (LOST_REPLY + "test_a_record_interrupted_after_its_save_left_is_resent_with_its_token",),
        topologies="standalone",
    ),
    Mutant(
        "multidraw-rollback-token",
        "a MultiDraw session rolls back with one token, so a resend gets the same answer",
        "client/drawstate/session.py",
        (Edit("        return self._rollback_token\n", "        return new_token()\n"),),
        (
            OUTCOMES + "test_multidraw_rollback_resends_with_one_token_and_returns_a_final_refund",
            MULTIDRAW_UNIT + "test_a_deferred_answer_after_an_attempt_that_may_have_applied_decides_nothing",
        ),
    ),
    Mutant(
        "outcome-unknown",
        "a save that may have reached the daemon and never got a definite answer is OutcomeUnknown",
        "client/drawstate/resend.py",
        (Edit("    if isinstance(exc, SidecarTimeout):\n        return True\n", "    return False\n"),),
        (
            MULTIDRAW_UNIT
            + "test_a_save_that_may_have_applied_raises_outcome_unknown_once_the_resend_deadline_passes",
            MULTIDRAW_UNIT + "test_one_lost_reply_among_refused_attempts_still_makes_the_outcome_unknown",
        ),
    ),
    Mutant(
        "internal-is-unknown",
        "a save the daemon answered `internal` is in doubt (OutcomeUnknown), never 'not recorded'",
        "client/drawstate/resend.py",
        (Edit("if self.retry.doubt_is_unknown and isinstance(exc, InternalError):", "if False:"),),
        (
            MULTIDRAW_UNIT
            + "test_an_internal_error_leaves_the_draw_in_doubt_and_recording_it_again_resends_the_same_save",
        ),
    ),
    Mutant(
        "drawstate-bounds-total-count",
        "total_count is at most the limit (both the fast check and the rule-by-rule walk)",
        "client/drawstate/rules.py",
        (
            Edit("and 1 <= total <= limits.max_total", "and 1 <= total"),
            Edit(
                '_int(data, "total_count", "", 1, limits.max_total)',
                '_int(data, "total_count", "", 1, 2**63)',
            ),
        ),
        (
            "tests/unit/test_rules_fields.py::test_total_count_cap_follows_limits",
            "tests/unit/test_rules_fields.py::test_total_count_rejected",
        ),
    ),
    Mutant(
        "drawstate-bounds-results",
        "no more results than completed_count",
        "client/drawstate/rules.py",
        (
            Edit(
                "type(results) is list and len(results) <= completed and (not results",
                "type(results) is list and (not results",
            ),
            Edit("    if len(results) > completed:\n", "    if False:\n"),
        ),
        ("tests/unit/test_rules_draws.py::test_results_longer_than_completed_count_are_rejected",),
    ),
    # --- saves checked by what they append (ops/accepted.py) ---------------------------------
    Mutant(
        "appended-draws-checked",
        "the results a save appends to an accepted state are checked like any others",
        RULES,
        (Edit("    if new_results and not _results_look_valid(new_results):\n", "    if False:\n"),),
        (ACCEPTED,),
    ),
    Mutant(
        "appended-bounds-results",
        "a state judged by what it appends still holds no more results than completed_count",
        RULES,
        (
            Edit(
                "        prefix.results <= len(results) <= completed\n",
                "        prefix.results <= len(results)\n",
            ),
        ),
        (ACCEPTED,),
    ),
    Mutant(
        "appended-same-total",
        "accepted draws vouch for a new state only under the same total (failed draws are bounded by it)",
        RULES,
        (Edit("total == prefix.total and ", ""),),
        (ACCEPTED,),
    ),
    Mutant(
        "appended-errors-rise",
        "failed draws a save appends rise from the last recorded one",
        RULES,
        (Edit("        if not previous < index <= drawn:\n", "        if not 0 < index <= drawn:\n"),),
        (ACCEPTED,),
    ),
    Mutant(
        "accepted-prefix-verified",
        "the rules skip only draws whose text hashes to the accepted state's (a rewritten draw is checked)",
        "daemon/drawstated/ops/accepted.py",
        (
            Edit(
                "            if previous is None or prefix != previous.hashes[i]:\n",
                "            if previous is None:\n",
            ),
        ),
        (
            ACCEPTED,
            INCREMENTAL + "test_a_recorded_prize_broken_at_the_same_length_is_refused_as_the_callers_mistake",
        ),
    ),
    Mutant(
        "digest-claim-matched",
        "save.lua skips its compare of recorded draws only when the claim equals the stored digest",
        SAVE_LUA,
        (
            Edit(
                "if stored_raw and not (expect_digest ~= '' and expect_digest == stored_digest) then",
                "if stored_raw and not (expect_digest ~= '') then",
            ),
        ),
        (
            INCREMENTAL + "test_rewriting_a_recorded_draw_to_a_text_of_the_same_length_is_stale_state",
            INCREMENTAL + "test_rewriting_a_recorded_prize_to_a_text_of_the_same_length_is_stale_state",
            INCREMENTAL + "test_another_daemons_save_in_between_is_kept_whatever_this_daemon_remembers",
        ),
    ),
    # --- one daemon per data dir ------------------------------------------------------------
    Mutant(
        "data-dir-lock",
        "a second daemon on the same data dir exits 1 naming the first one's pid, starting nothing",
        "daemon/drawstated/server/locks.py",
        (Edit('            fds.append(_lock(data_dir / DATA_LOCK_NAME, f"data dir {data_dir}"))\n', ""),),
        (ONE_DAEMON + "test_second_daemon_on_the_same_data_dir_exits_1_naming_the_pid_and_starts_no_redis",),
    ),
    Mutant(
        "socket-lock",
        "a second daemon on the same socket path exits 1 naming the first one's pid",
        "daemon/drawstated/server/locks.py",
        (
            Edit(
                '                fds.append(_lock(socket_lock_path(socket_path), f"socket {socket_path}"))\n',
                "",
            ),
        ),
        (ONE_DAEMON + "test_second_daemon_on_the_same_socket_with_its_own_data_dir_exits_1_naming_the_pid",),
    ),
    Mutant(
        "client-left-write-runs-on",
        "a write whose client closed its socket still reaches Redis: only reads are stopped",
        "daemon/drawstated/ops/__init__.py",
        (
            Edit(
                'READ_ONLY_OPS = frozenset({"ping", "load", "pending", "stats", "audit"})',
                'READ_ONLY_OPS = frozenset({"ping", "load", "pending", "stats", "audit", "complete"})',
            ),
        ),
        (
            "tests/integration/test_redis_outage.py::"
            "test_the_reads_of_a_client_that_left_are_stopped_and_its_writes_run_to_their_end",
        ),
        topologies="standalone",
    ),
    Mutant(
        "client-left-read-frees-its-share",
        "a read stopped because its client left gives back its in-flight slot and its bytes",
        "daemon/drawstated/server/connection.py",
        (Edit("        if task.cancelled():\n            self._finished(cost)\n", "        pass\n"),),
        (
            "tests/integration/test_redis_outage.py::"
            "test_a_crowd_that_gave_up_while_the_byte_budget_was_spent_leaves_none_of_it_held",
            "tests/integration/test_redis_outage.py::"
            "test_the_reads_of_a_client_that_left_are_stopped_and_its_writes_run_to_their_end",
        ),
        topologies="standalone",
    ),
)


def by_name(names: list[str]) -> tuple[Mutant, ...]:
    """The mutants named, or whose name starts with `<name>-`; KeyError naming one that matches none."""
    if not names:
        return MUTANTS
    chosen: dict[str, Mutant] = {}
    for name in names:
        found = [m for m in MUTANTS if m.name == name or m.name.startswith(name + "-")]
        if not found:
            raise KeyError(name)
        chosen.update((m.name, m) for m in found)
    return tuple(m for m in MUTANTS if m.name in chosen)
