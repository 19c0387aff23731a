"""Binary records between the coordinator, the fork-servers and the program children (no pickle upstream).

Every message is a frame: a little-endian u32 length, then the payload. A fork-server sends three payloads:
- b"H" + notes: hello, once, after start-up; notes are ";"-separated warnings (UTF-8), possibly empty;
- b"S": it starts the next chunk;
- b"R" + u32 position in the chunk + one part per input: the outputs of one program.
A part is b"\\x00" + u8 h + u8 w + h*w cell bytes (a grid), or u8 failure code + u16 length + UTF-8 message.
Records come from a child that ran untrusted code, so `decode_outputs` checks every byte.
"""

from __future__ import annotations

import os
import struct

from soar.execution.outcome import MAX_SIDE, CanonicalGrid, Failure, FailureKind, Output

MAX_MESSAGE = 300  # characters kept of a failure message

STARTED = b"S"

_LEN = struct.Struct("<I")
_POS = struct.Struct("<I")
_MSG = struct.Struct("<BH")
_CODES = {kind: code for code, kind in enumerate(FailureKind, start=1)}
_KINDS = {code: kind for kind, code in _CODES.items()}


def frame(payload: bytes) -> bytes:
    return _LEN.pack(len(payload)) + payload


def split_frames(buf: bytearray, max_payload: int) -> tuple[list[bytes], bool]:
    """Remove the complete frames at the head of `buf` and return them, and whether an oversized frame
    header (garbage) follows them."""
    out = []
    start = 0
    broken = False
    while len(buf) - start >= 4:
        (size,) = _LEN.unpack_from(buf, start)
        if size > max_payload:
            broken = True
            break
        if len(buf) - start - 4 < size:
            break
        out.append(bytes(buf[start + 4 : start + 4 + size]))
        start += 4 + size
    del buf[:start]
    return out, broken


def read_frame(fd: int) -> bytes | None:
    """Blocking read of one frame from a trusted peer; None at end of file."""
    head = _read_exactly(fd, 4)
    return None if head is None else _read_exactly(fd, _LEN.unpack(head)[0])


def _read_exactly(fd: int, n: int) -> bytes | None:
    chunks, left = [], n
    while left:
        data = os.read(fd, left)
        if not data:
            return None
        chunks.append(data)
        left -= len(data)
    return b"".join(chunks)


def write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def grid_part(h: int, w: int, cells: bytes) -> bytes:
    return bytes((0, h, w)) + cells


def grid_from_cells(h: int, w: int, cells: bytes) -> CanonicalGrid:
    """The canonical grid (tuple of tuples of ints) of h x w cell bytes, row by row."""
    return tuple(tuple(cells[r : r + w]) for r in range(0, h * w, w))


def failure_part(kind: FailureKind, message: str = "") -> bytes:
    data = message[:MAX_MESSAGE].encode("utf-8", "replace")
    return _MSG.pack(_CODES[kind], len(data)) + data


def record(pos: int, parts: list[bytes]) -> bytes:
    return b"R" + _POS.pack(pos) + b"".join(parts)


def max_record(n_inputs: int) -> int:
    """Upper bound on a record's payload size for a program with `n_inputs` inputs."""
    return 5 + n_inputs * (3 + max(MAX_SIDE * MAX_SIDE, 4 * MAX_MESSAGE))


def record_pos(payload: bytes) -> int:
    """The position of a result record, or -1 if `payload` is not one."""
    if len(payload) < 5 or payload[0] != ord("R"):
        return -1
    return _POS.unpack_from(payload, 1)[0]


def decode_outputs(payload: bytes, n_inputs: int) -> list[Output]:
    """Strictly decode the parts of a record (after its position); raise ValueError on any inconsistency."""
    try:
        return _decode_parts(payload, n_inputs)
    except (IndexError, KeyError, struct.error) as e:
        raise ValueError(f"malformed record: {e!r}") from None


def _decode_parts(payload: bytes, n_inputs: int) -> list[Output]:
    outs: list[Output] = []
    i = 5
    for _ in range(n_inputs):
        code = payload[i]
        if code == 0:
            h, w = payload[i + 1], payload[i + 2]
            cells = payload[i + 3 : i + 3 + h * w]
            if not (1 <= h <= MAX_SIDE and 1 <= w <= MAX_SIDE) or len(cells) != h * w or max(cells) > 9:
                raise ValueError("bad grid")
            outs.append(grid_from_cells(h, w, cells))
            i += 3 + h * w
        else:
            kind = _KINDS[code]
            (_, size) = _MSG.unpack_from(payload, i)
            message = payload[i + 3 : i + 3 + size]
            if len(message) != size:
                raise ValueError("truncated message")
            outs.append(Failure(kind, message.decode("utf-8", "replace")))
            i += 3 + size
    if i != len(payload):
        raise ValueError("trailing bytes")
    return outs
