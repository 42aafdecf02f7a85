"""Decoding a request frame within bounds: container sizes, nesting, items, and what it will cost.

msgpack turns bytes into Python objects at up to ~73 times their size (an empty map is one byte
on the wire and a 64-byte dict plus its slot in memory), so a 1 MiB frame of empty maps would be
~76 MB. A request never needs that: the largest valid one is a save of a state at MAX_TOTAL draws.
So the daemon decodes with its own limits (the client's `decode_body` trusts its daemon):

- items (array elements plus map entries, summed over the frame) at most
  REQUEST_ITEMS_PER_DRAW x max_total + REQUEST_ITEMS_SLACK: a state with max_total prizes and
  their results is 6 items per draw. No one array or map may declare more either (msgpack sizes
  a container from its header before it reads it), and extension types are refused;
- nesting at most MAX_REQUEST_DEPTH (a save is 4 deep: request, state, prize_results, prize).

Decoding stops as soon as a limit is passed. The reply is `invalid_request` with the request's id
when it can be found without decoding the rest (RefusedRequest.request_id; skipping values builds
nothing), so a pipelining client still matches it; else with id nil, like any undecodable frame.
A state that breaks a DrawState rule within these limits is decoded and refused by its rules.

The cost of a decoded request, charged to the in-flight byte budget (flow.py), is its frame plus
ITEM_BYTES per item: no shape of msgpack decodes to more than that (tests/unit/test_decoding.py
measures the worst shapes with tracemalloc).
"""

from __future__ import annotations

from typing import Any

import msgpack

from drawstate.limits import INT64_MAX, MAX_TOTAL
from drawstate.protocol import INVALID_REQUEST, FrameError
from drawstated.config import Config

#: Deepest nesting of maps and arrays in a request.
MAX_REQUEST_DEPTH = 8
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


#: Bounds on the keys read while looking for a refused request's id: nothing big is built.
_KEY_LIMITS = {"max_str_len": 64, "max_bin_len": 64, "max_array_len": 16, "max_map_len": 16, "max_ext_len": 0}


class _TooMuch(Exception):
    """Raised from the decoder's hooks to stop decoding as soon as a limit is passed."""


class RefusedRequest(FrameError):
    """A frame past a decoding limit: invalid_request, with its id when one could be found."""

    def __init__(self, message: str, request_id: int | None) -> None:
        super().__init__(INVALID_REQUEST, message)
        self.request_id = request_id


def request_id_of(body: bytes) -> int | None:
    """The top-level `id` of a request map, read by skipping the other values (they build nothing)."""
    unpacker = msgpack.Unpacker(
        raw=False, strict_map_key=False, max_buffer_size=max(1, len(body)), **_KEY_LIMITS
    )
    unpacker.feed(body)
    try:
        for _ in range(unpacker.read_map_header()):
            if unpacker.unpack() == "id":
                value = unpacker.unpack()
                return value if type(value) is int and 0 <= value <= INT64_MAX else None
            unpacker.skip()
    except Exception:  # not a map, truncated, a key too big to be a field name: no id to give
        return None
    return None


class RequestDecoder:
    """Decodes request frames within one daemon's limits; `decode` returns (request, cost in bytes)."""

    __slots__ = ("max_array_len", "max_depth", "max_items", "max_map_len")

    def __init__(self, config: Config) -> None:
        limits = config.limits
        self.max_items = REQUEST_ITEMS_PER_DRAW * limits.max_total + REQUEST_ITEMS_SLACK
        self.max_array_len = self.max_map_len = self.max_items
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
            raise RefusedRequest(str(exc), request_id_of(body)) from None
        except ValueError as exc:
            text = str(exc)
            if "max_array_len" in text or "max_map_len" in text:  # declared past the items limit
                message = f"request has more than {max_items} items"
                raise RefusedRequest(message, request_id_of(body)) from None
            if "max_ext_len" in text:
                raise RefusedRequest("extension types are not allowed", request_id_of(body)) from None
            raise FrameError(INVALID_REQUEST, f"body is not valid msgpack: {exc}") from exc
        except Exception as exc:  # msgpack raises several unrelated types for bad input
            raise FrameError(INVALID_REQUEST, f"body is not valid msgpack: {exc}") from exc
        return request, len(body) + ITEM_BYTES * items
