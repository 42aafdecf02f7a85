"""Limits on a DrawState and on the wire: every bound is named here, once.

The daemon builds its own `Limits` from its configuration; the client uses the
defaults to validate before sending, so a bad state fails fast and locally.
"""

from __future__ import annotations

from dataclasses import dataclass

KIB = 1024
MIB = 1024 * KIB

#: Largest total_count of one multi-draw operation.
MAX_TOTAL = 10_000
#: Largest JSON encoding of one state, in bytes. Exceeding it is an error, never a truncation.
MAX_STATE_BYTES = 512 * KIB
#: Largest frame on the wire; above MAX_STATE_BYTES so a state at its cap still fits.
MAX_FRAME_BYTES = 1 * MIB
MAX_LOCK_KEY_CHARS = 200
MAX_OPERATION_ID_CHARS = 64
MAX_METADATA_ENTRIES = 32
MAX_METADATA_KEY_CHARS = 64
MAX_METADATA_VALUE_CHARS = 1024
MAX_PRIZE_TEXT_CHARS = 256
MAX_ERROR_MESSAGE_CHARS = 1024
MAX_TOKEN_CHARS = 64
MAX_REASON_CHARS = 512
#: Signed 64-bit bounds: what msgpack, Go's int64 and Redis agree on.
INT64_MIN = -(2**63)
INT64_MAX = 2**63 - 1
#: Draw results and prize values stay exactly representable as JSON numbers in every
#: engine (IEEE doubles), which is also how the save script compares recorded draws.
DRAW_INT_MAX = 2**53 - 1
DRAW_INT_MIN = -DRAW_INT_MAX


@dataclass(frozen=True, slots=True)
class Limits:
    """Bounds applied to every DrawState, wherever it comes from."""

    max_total: int = MAX_TOTAL
    max_state_bytes: int = MAX_STATE_BYTES
    max_lock_key_chars: int = MAX_LOCK_KEY_CHARS
    max_operation_id_chars: int = MAX_OPERATION_ID_CHARS
    max_metadata_entries: int = MAX_METADATA_ENTRIES
    max_metadata_key_chars: int = MAX_METADATA_KEY_CHARS
    max_metadata_value_chars: int = MAX_METADATA_VALUE_CHARS
    max_prize_text_chars: int = MAX_PRIZE_TEXT_CHARS
    max_error_message_chars: int = MAX_ERROR_MESSAGE_CHARS


DEFAULT_LIMITS = Limits()
