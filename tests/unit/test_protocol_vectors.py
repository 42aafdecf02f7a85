"""Shared conformance vectors: docs/protocol.md §11, the vectors file and the codec agree byte for byte.

The Go client's tests (clients/go/drawstate/vectors_test.go) decode and
re-encode the same file, so every client is held to the bytes the document shows.
"""

from __future__ import annotations

import struct

import pytest

from drawstate.protocol import HEADER_SIZE, decode_body, encode_frame
from tests.support.protocol_doc import PROTOCOL_DOC, doc_frames, load_vectors, vectors_document

VECTORS = load_vectors()["vectors"]
EXPECTED_VECTORS = 12  # §11.1 to §11.7: each example frame of the doc, requests and replies


def _ids(vector: dict) -> str:
    return str(vector["name"])


def test_vectors_file_is_exactly_what_the_protocol_doc_shows():
    assert load_vectors() == vectors_document(doc_frames())


def test_every_example_frame_of_the_doc_is_a_vector():
    assert len(VECTORS) == EXPECTED_VECTORS
    names = [vector["name"] for vector in VECTORS]
    assert len(set(names)) == len(names)


@pytest.mark.parametrize("vector", VECTORS, ids=_ids)
def test_encode_frame_of_the_decoded_map_gives_the_vector_bytes(vector):
    assert encode_frame(vector["decoded"]).hex() == vector["frame_hex"]


@pytest.mark.parametrize("vector", VECTORS, ids=_ids)
def test_decode_body_of_the_vector_gives_the_decoded_map(vector):
    frame = bytes.fromhex(vector["frame_hex"])
    (length,) = struct.unpack(">I", frame[:HEADER_SIZE])
    assert length == len(frame) - HEADER_SIZE
    decoded = decode_body(frame[HEADER_SIZE:])
    assert decoded == vector["decoded"]
    assert list(decoded) == list(vector["decoded"])  # the key order, too: it fixes the bytes


def test_doc_parser_sees_an_edited_byte_so_the_doc_cannot_drift_from_the_vectors():
    original = PROTOCOL_DOC.read_text()
    edited = doc_frames(original.replace("cd 03 e8", "cd 03 e9", 1))
    assert edited[0].frame != doc_frames(original)[0].frame
    assert vectors_document(edited) != load_vectors()


def test_doc_parser_refuses_a_frame_without_its_decoded_form():
    text = PROTOCOL_DOC.read_text().replace(
        'Decoded: `{"id": 1, "op": "ping"', 'Decoded `{"id": 1, "op": "ping"', 1
    )
    with pytest.raises(ValueError, match="no decoded form"):
        doc_frames(text)
