"""Read the history rows of an offline W&B run file (``run-<id>.wandb``) without a W&B server.

The file is a LevelDB-style log, as wandb writes it: a 7-byte header (``:W&B``, magic, version), then 32 KiB
blocks of records, each with a 7-byte header (CRC32, length, type: 1 full, 2 first, 3 middle, 4 last) and a
piece of a serialised ``wandb.proto`` ``Record``.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Iterator
from pathlib import Path

from wandb.proto import wandb_internal_pb2

BLOCK = 32768
HEADER = 7


def records(path: Path) -> Iterator[wandb_internal_pb2.Record]:
    data = Path(path).read_bytes()
    assert data[:4] == b":W&B", f"{path} is not a W&B run file"
    position, pieces = HEADER, b""
    while position + HEADER <= len(data):
        left = BLOCK - position % BLOCK
        _, length, kind = struct.unpack("<IHB", data[position : position + HEADER])
        if left < HEADER or (kind == 0 and length == 0):  # block padding
            position += left
            continue
        pieces += data[position + HEADER : position + HEADER + length]
        position += HEADER + length
        if kind in (1, 4):
            record = wandb_internal_pb2.Record()
            record.ParseFromString(pieces)
            pieces = b""
            yield record


def history(path: Path) -> list[tuple[int, dict[str, object]]]:
    """``(W&B step, {key: value})`` of every history row; a media value is its dict of fields (path, type, ...)."""
    rows = []
    for record in records(path):
        if record.WhichOneof("record_type") != "history":
            continue
        row: dict[str, object] = {}
        for item in record.history.item:
            key = item.key or "/".join(item.nested_key)
            row[key] = json.loads(item.value_json)
        rows.append((record.history.step.num, row))
    return rows


def run_name(path: Path) -> str:
    return next(record.run.display_name for record in records(path) if record.WhichOneof("record_type") == "run")
