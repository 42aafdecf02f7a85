"""Decoding a request frame within bounds: container sizes, nesting, items, and what it will cost.

msgpack turns bytes into Python objects at up to ~73 times their size (an empty map is one byte
on the wire and a 64-byte dict plus its slot in memory), so a 1 MiB frame of empty maps would be
~76 MB. A request never needs that: the largest valid one is a save of a state at MAX_TOTAL draws.
So the daemon decodes with its own limits (the client's `decode_body` trusts its daemon):

- every array at most `max_total` (or MAX_ACK_IDS) elements, every map at most MAX_REQUEST_MAP_LEN
  entries (or the metadata cap), no extension types;
- nesting at most MAX_REQUEST_DEPTH (a save is 4 deep: request, state, prize_results, prize);
- items (array elements plus map entries, summed over the frame) at most
  REQUEST_ITEMS_PER_DRAW x max_total + REQUEST_ITEMS_SLACK: a state with max_total prizes and
  their results is 6 items per draw. Decoding stops as soon as a limit is passed.

The cost of a decoded request, charged to the in-flight byte budget (budget.py), is its frame plus
ITEM_BYTES per item: no shape of msgpack decodes to more than that (tests/unit/test_decoding.py
measures the worst shapes with tracemalloc).
"""

from __future__ import annotations

from typing import Any

import msgpack

from drawstate.limits import MAX_TOTAL
from drawstate.protocol import INVALID_REQUEST, FrameError
from drawstated.config import Config
from drawstated.consumers import MAX_ACK_IDS

#: Deepest nesting of maps and arrays in a request.
MAX_REQUEST_DEPTH = 8
#: Most entries of one map in a request (a request's fields, a state's, its metadata).
MAX_REQUEST_MAP_LEN = 256
#: Items one draw of a state can take: its result, its prize in the list and the prize's 4 fields.
REQUEST_ITEMS_PER_DRAW = 6
#: Items beyond the draws: a request's and a state's fields, metadata, ack ids.
REQUEST_ITEMS_SLACK = 4096
#: The items limit with the default max_total (the decoder computes it from the configured one).
MAX_REQUEST_ITEMS = REQUEST_ITEMS_PER_DRAW * MAX_TOTAL + REQUEST_ITEMS_SLACK
#: Upper bound on the memory one item takes once decoded, beyond its bytes on the wire: a map
#: entry (~36 B in the table) holding a new short str key (~51 B) and a new int (~28 B), or an
#: array slot (8 B) holding an empty dict (64 B).
ITEM_BYTES = 128


_CONTAINERS = frozenset({dict, list})


class _TooMuch(Exception):
    """Raised from the decoder's hooks to stop decoding as soon as a limit is passed."""


class RequestDecoder:
    """Decodes request frames within one daemon's limits; `decode` returns (request, cost in bytes)."""

    __slots__ = ("max_array_len", "max_depth", "max_items", "max_map_len")

    def __init__(self, config: Config) -> None:
        limits = config.limits
        self.max_items = REQUEST_ITEMS_PER_DRAW * limits.max_total + REQUEST_ITEMS_SLACK
        self.max_array_len = max(limits.max_total, MAX_ACK_IDS)
        self.max_map_len = max(MAX_REQUEST_MAP_LEN, limits.max_metadata_entries + 64)
        self.max_depth = MAX_REQUEST_DEPTH

    def decode(self, body: bytes) -> tuple[Any, int]:
        items = 0
        # id → depth of each container holding containers (leaves are depth 1 and not stored);
        # every container decoded so far is alive (its parent holds it), so ids are unique.
        depths: dict[int, int] = {}
        max_items, max_depth = self.max_items, self.max_depth

        def hook(container: Any) -> Any:
            nonlocal items
            items += len(container)
            if items > max_items:
                raise _TooMuch(f"request has more than {max_items} items")
            depth = 1
            for value in container.values() if type(container) is dict else container:
                if type(value) in _CONTAINERS:
                    inner = depths.get(id(value), 1) + 1
                    if inner > depth:  # noqa: PLR1730  # cheaper than max() on every item
                        depth = inner
            if depth > 1:
                if depth > max_depth:
                    raise _TooMuch(f"request nests deeper than {max_depth}")
                depths[id(container)] = depth
            return container

        try:
            request = msgpack.unpackb(
                body,
                raw=False,
                strict_map_key=False,
                object_hook=hook,
                list_hook=hook,
                max_array_len=self.max_array_len,
                max_map_len=self.max_map_len,
                max_ext_len=0,
            )
        except _TooMuch as exc:
            raise FrameError(INVALID_REQUEST, str(exc)) from None
        except Exception as exc:  # msgpack raises several unrelated types for bad input
            raise FrameError(INVALID_REQUEST, f"body is not valid msgpack: {exc}") from exc
        return request, len(body) + ITEM_BYTES * items
