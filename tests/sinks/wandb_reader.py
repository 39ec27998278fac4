"""A reader of W&B's offline ``.wandb`` run files for the tests: wandb 0.31 ships no Python reader any more, so this
decodes the file's framing (a LevelDB-style log of 32 KiB blocks) and parses each record with wandb's own protobuf
``Record``. Returns the history rows ({"_step": s, tag: value or media dict}) and the config."""

from __future__ import annotations

import json
import struct
import zlib
from pathlib import Path
from typing import Any

BLOCK, HEADER, CHUNK = 32768, "<4sHB", 7
FULL, FIRST, MIDDLE, LAST = 1, 2, 3, 4


def _records(data: bytes):
    ident, magic, version = struct.unpack_from(HEADER, data, 0)
    assert ident == b":W&B" and magic == 0xBEE1 and version == 0
    pos, buf = 7, b""
    while pos + CHUNK <= len(data):
        left = BLOCK - (pos % BLOCK)
        if left < CHUNK:
            pos += left
            continue
        crc, length, kind = struct.unpack_from("<IHB", data, pos)
        if kind == 0 and length == 0:
            pos += left
            continue
        chunk = data[pos + CHUNK: pos + CHUNK + length]
        if len(chunk) < length:
            break
        assert zlib.crc32(chunk, zlib.crc32(bytes([kind]))) & 0xFFFFFFFF == crc, f"crc mismatch at {pos}"
        pos += CHUNK + length
        if kind == FULL:
            yield chunk
        elif kind == FIRST:
            buf = chunk
        elif kind == MIDDLE:
            buf += chunk
        elif kind == LAST:
            yield buf + chunk
            buf = b""


def _put(d: dict, path: list[str], value: Any) -> None:
    for p in path[:-1]:
        d = d.setdefault(p, {})
    d[path[-1]] = value


def read_run(path: Path) -> tuple[list[dict[str, Any]], dict[str, Any], set[str]]:
    from wandb.proto import wandb_internal_pb2 as pb

    history, config, kinds = [], {}, set()
    for raw in _records(Path(path).read_bytes()):
        rec = pb.Record()
        rec.ParseFromString(raw)
        kind = rec.WhichOneof("record_type")
        kinds.add(kind)
        if kind == "history":
            row: dict[str, Any] = {}
            for item in rec.history.item:
                _put(row, list(item.nested_key) if item.nested_key else [item.key], json.loads(item.value_json))
            history.append(row)
        elif kind == "run":
            for item in rec.run.config.update:
                _put(config, list(item.nested_key) if item.nested_key else [item.key], json.loads(item.value_json))
    return history, config, kinds
