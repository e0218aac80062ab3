"""LiveCodeBench's encoded private test cases, read without running a pickle.

LiveCodeBench (code_generation_lite) ships `private_test_cases` as base64 of zlib of a pickled JSON string; its own
loader calls `pickle.loads` on it. Unpickling data from a download runs whatever the pickle names, so here the
pickle is only walked opcode by opcode (`pickletools.genops`, which parses and never builds objects): it must be
one string and nothing else (no globals, no calls), and that string is then read as JSON. Decompression is capped,
so a small field cannot expand into gigabytes.
"""

from __future__ import annotations

import base64
import binascii
import pickletools
import zlib
from collections.abc import Iterator
from typing import Any

MAX_DECODED_BYTES = 1 << 30
"""The most a field may decompress to (LiveCodeBench's largest private case sets are tens of megabytes)."""

_STRING_OPCODES = frozenset({"UNICODE", "BINUNICODE", "SHORT_BINUNICODE", "BINUNICODE8"})
_BOOKKEEPING_OPCODES = frozenset({"PROTO", "FRAME", "MEMOIZE", "PUT", "BINPUT", "LONG_BINPUT", "STOP"})


class EncodedCasesError(ValueError):
    """The field is not LiveCodeBench's encoding of a JSON string (says which layer failed)."""


def decode_livecodebench_cases(text: str, max_bytes: int = MAX_DECODED_BYTES) -> str:
    """The JSON text inside LiveCodeBench's encoding of `private_test_cases` (base64 → zlib → a pickled str)."""
    try:
        compressed = base64.b64decode(text.encode("ascii"), validate=True)
    except (UnicodeEncodeError, binascii.Error):
        raise EncodedCasesError("not base64") from None
    inflater = zlib.decompressobj()
    try:
        pickled = inflater.decompress(compressed, max_bytes)
    except zlib.error as error:
        raise EncodedCasesError(f"base64 but not zlib data ({error})") from None
    if inflater.unconsumed_tail or not inflater.eof:
        raise EncodedCasesError(f"zlib data cut short, or more than {max_bytes} bytes once decompressed")
    return _pickled_string(pickled)


def _pickled_string(pickled: bytes) -> str:
    """The one string a pickle holds, read from its opcodes; any other pickle is refused, never loaded."""
    strings: list[str] = []
    for name, argument in _opcodes(pickled):
        if name in _STRING_OPCODES:
            strings.append(str(argument))
        elif name not in _BOOKKEEPING_OPCODES:
            raise EncodedCasesError(f"the pickle holds more than a string (opcode {name}); not loaded")
    if len(strings) != 1:
        raise EncodedCasesError(f"the pickle holds {len(strings)} strings, expected one")
    return strings[0]


def _opcodes(pickled: bytes) -> Iterator[tuple[str, Any]]:
    """(name, argument) of each opcode up to STOP, parsed only; a malformed pickle is an `EncodedCasesError`."""
    operations = pickletools.genops(pickled)
    while True:
        try:
            opcode, argument, _ = next(operations)
        except StopIteration:
            return
        except (ValueError, UnicodeDecodeError) as error:
            raise EncodedCasesError(f"zlib data but not a pickle ({error})") from None
        yield opcode.name, argument
