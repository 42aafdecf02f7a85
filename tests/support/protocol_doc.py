"""The example frames of docs/protocol.md §11, read from the text, and the shared vectors file made from them.

tests/fixtures/protocol_vectors.json holds the same frames for every client's
tests (the Go client decodes and re-encodes them byte for byte); the Python
tests compare that file with the document, so the two cannot drift apart.
Regenerate the file after editing §11:

    python -m tests.support.protocol_doc > tests/fixtures/protocol_vectors.json
"""

from __future__ import annotations

import json
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
PROTOCOL_DOC = REPO / "docs" / "protocol.md"
VECTORS_FILE = REPO / "tests" / "fixtures" / "protocol_vectors.json"

_SECTION_START = "## 11."
_SUBSECTION = re.compile(r"^### (11\.\d+)\b")
_HEX_PAIR = re.compile(r"\b[0-9a-f]{2}\b")
# A bare `nil` token: the document writes msgpack nil that way inside JSON notation.
_NIL = re.compile(r"\bnil\b")


@dataclass(frozen=True, slots=True)
class DocFrame:
    """One example frame: its subsection, the whole frame (length prefix + body) and its decoded map."""

    section: str
    frame: bytes
    decoded: dict[str, Any]


def _frame_bytes(block: list[str]) -> bytes:
    """The bytes of a ```text block that opens with `length`: the prefix, then `body` and its continuation."""
    data: list[str] = []
    for line in block:
        text = line.split("(", 1)[0]  # "(28 bytes)" is a note, not data
        text = text.removeprefix("length").removeprefix("body")
        data.extend(_HEX_PAIR.findall(text))
    return bytes.fromhex("".join(data))


def _json(text: str) -> dict[str, Any]:
    value = json.loads(_NIL.sub("null", text))
    if not isinstance(value, dict):
        raise ValueError(f"decoded form is not a map: {text!r}")
    return value


def doc_frames(text: str | None = None) -> list[DocFrame]:
    """Every example frame of §11 with the decoded map the document gives for it, in document order."""
    lines = (PROTOCOL_DOC.read_text() if text is None else text).splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(_SECTION_START))
    section, frames, pending = "", [], None
    i = start
    while i < len(lines):
        line = lines[i]
        if i > start and line.startswith("## "):
            break
        if match := _SUBSECTION.match(line):
            section = match.group(1)
        if line.startswith("```"):
            end = lines.index("```", i + 1)
            block, lang = lines[i + 1 : end], line[3:].strip()
            if lang == "text" and block and block[0].startswith("length"):
                if pending is not None:
                    raise ValueError(f"frame in §{pending[0]} has no decoded form before the next frame")
                pending = (section, _frame_bytes(block))
            elif lang == "json" and pending is not None:
                frames.append(DocFrame(pending[0], pending[1], _json("\n".join(block))))
                pending = None
            i = end + 1
            continue
        if line.startswith("Decoded: `") and pending is not None:
            frames.append(DocFrame(pending[0], pending[1], _json(line.split("`")[1])))
            pending = None
        i += 1
    if pending is not None:
        raise ValueError(f"frame in §{pending[0]} has no decoded form")
    return frames


def vector_name(decoded: dict[str, Any], last_op: str) -> str:
    """`<op>_request`, `<op>_reply`, or `<error code>_reply`: what each vector is, for test output."""
    if "op" in decoded:
        return f"{decoded['op']}_request"
    if decoded.get("ok") is False:
        return f"{decoded['error']['code']}_reply"
    return f"{last_op}_reply"


def vectors_document(frames: list[DocFrame]) -> dict[str, Any]:
    vectors, last_op = [], ""
    for frame in frames:
        name = vector_name(frame.decoded, last_op)
        last_op = frame.decoded.get("op", last_op)
        vectors.append(
            {"name": name, "section": frame.section, "frame_hex": frame.frame.hex(), "decoded": frame.decoded}
        )
    return {
        "source": "docs/protocol.md section 11; regenerate with: python -m tests.support.protocol_doc",
        "notes": "frame_hex is the whole frame (4-byte big-endian length, then the msgpack body); "
        "decoded is the body's map in JSON, null for msgpack nil, keys in the order they are encoded",
        "vectors": vectors,
    }


def load_vectors() -> dict[str, Any]:
    return json.loads(VECTORS_FILE.read_text())  # type: ignore[no-any-return]


if __name__ == "__main__":
    json.dump(vectors_document(doc_frames()), sys.stdout, indent=2, ensure_ascii=False)
    sys.stdout.write("\n")
