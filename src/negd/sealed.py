"""Checksums of run-directory payloads: every file negd reads back carries a SHA-256 of its content.

torch's zip reader checks no CRC, and a flipped bit in a tensor gives a file that loads and silently
differs. So every payload is sealed when written and verified when read (issue 19, class 3):

* a dict payload (``checkpoint.pt``, a shard checkpoint) carries ``"sha256"``: the digest of its
  content (:func:`content_digest`: keys, types, values, tensor dtypes, shapes and bytes), so the
  file stays an ordinary ``torch.load``-able dict;
* an ``.npz`` (``snapshots.npz``) carries the array ``"sha256"`` (32 bytes, uint8): the digest of the
  other arrays; ``np.load`` still reads it;
* the append-only snapshot log (``snapshots.log``, :func:`append_record` / :func:`read_records`)
  prefixes every record with its length and digest.

A payload that fails its digest is a :class:`~negd.runfiles.CorruptFile` naming the file. A payload
written before checksums existed (no ``"sha256"``) is read with one note on stderr per file
(:func:`legacy_note`) where its loader accepts it: the arm checkpoint and snapshots of older run
directories; shard checkpoints without a digest are recomputed (minutes at most).
"""

from __future__ import annotations

import hashlib
import io
import os
import struct
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch

__all__ = ["DIGEST_KEY", "content_digest", "seal", "digest_problem", "seal_arrays", "arrays_problem",
           "legacy_note", "record", "append_record", "read_records", "npz_bytes", "npz_arrays"]

DIGEST_KEY = "sha256"
RECORD_MAGIC = b"NEGDREC1"
_RECORD_HEADER = struct.Struct(">8sQ32s")  # magic, payload length, sha256 of the payload
_noted: set[str] = set()


def _feed(h, obj: Any) -> None:
    """Feed ``obj`` to ``h`` with its type, so that no two different contents give the same bytes."""
    if isinstance(obj, torch.Tensor):
        t = obj.detach().cpu().contiguous()
        h.update(f"T{t.dtype}{tuple(t.shape)}".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    elif isinstance(obj, np.ndarray):
        a = np.ascontiguousarray(obj)
        h.update(f"A{a.dtype.str}{a.shape}".encode())
        h.update(a.tobytes())
    elif isinstance(obj, dict):
        h.update(f"D{len(obj)}".encode())
        for key in sorted(obj, key=repr):
            _feed(h, key)
            _feed(h, obj[key])
    elif isinstance(obj, list | tuple):
        h.update(f"{'L' if isinstance(obj, list) else 'U'}{len(obj)}".encode())
        for item in obj:
            _feed(h, item)
    elif isinstance(obj, bytes):
        h.update(b"B%d:" % len(obj) + obj)
    elif obj is None or isinstance(obj, bool | int | float | str):
        text = repr(obj)
        h.update(f"{type(obj).__name__}{len(text)}:{text}".encode())
    else:
        raise TypeError(f"cannot checksum a {type(obj).__name__}")


def content_digest(obj: Any) -> str:
    """SHA-256 (hex) of ``obj``'s content: nested dicts, lists, scalars, strings, tensors, arrays."""
    h = hashlib.sha256()
    _feed(h, obj)
    return h.hexdigest()


def seal(payload: dict) -> dict:
    """``payload`` with its digest under DIGEST_KEY."""
    body = {k: v for k, v in payload.items() if k != DIGEST_KEY}
    return body | {DIGEST_KEY: content_digest(body)}


def digest_problem(payload: dict) -> str | None:
    """None when ``payload``'s digest matches; "no checksum" or the mismatch otherwise."""
    if DIGEST_KEY not in payload:
        return "no checksum"
    body = {k: v for k, v in payload.items() if k != DIGEST_KEY}
    try:
        ok = payload[DIGEST_KEY] == content_digest(body)
    except TypeError:  # a type that no negd file holds
        ok = False
    return None if ok else "fails its checksum (sha256): the file is damaged"


def seal_arrays(arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """``arrays`` with the digest of the others as a uint8[32] array under DIGEST_KEY."""
    body = {k: v for k, v in arrays.items() if k != DIGEST_KEY}
    return body | {DIGEST_KEY: np.frombuffer(bytes.fromhex(content_digest(body)), dtype=np.uint8)}


def arrays_problem(arrays: dict[str, np.ndarray]) -> str | None:
    """As :func:`digest_problem`, for arrays sealed by :func:`seal_arrays`."""
    if DIGEST_KEY not in arrays:
        return "no checksum"
    body = {k: v for k, v in arrays.items() if k != DIGEST_KEY}
    stored = np.asarray(arrays[DIGEST_KEY])
    ok = stored.dtype == np.uint8 and stored.shape == (32,) and stored.tobytes().hex() == content_digest(body)
    return None if ok else "fails its checksum (sha256): the file is damaged"


def legacy_note(path: Path) -> None:
    """One line, once per file and process: a file from before checksums, read unverified."""
    key = str(path)
    if key not in _noted:
        _noted.add(key)
        print(f"negd: {path}: written before checksums (negd 0.1); read without verification",
              file=sys.stderr)


def npz_bytes(arrays: dict[str, np.ndarray]) -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


def npz_arrays(data: bytes) -> dict[str, np.ndarray]:
    with np.load(io.BytesIO(data), allow_pickle=False) as z:
        return {k: np.asarray(z[k]) for k in z.files}


def record(payload: bytes) -> bytes:
    """One record of a log: header (magic, length, SHA-256 of ``payload``), then ``payload``."""
    return _RECORD_HEADER.pack(RECORD_MAGIC, len(payload), hashlib.sha256(payload).digest()) + payload


def append_record(path: Path, payload: bytes) -> None:
    """Append one :func:`record` to ``path`` and sync it to disk."""
    with open(path, "ab") as f:
        f.write(record(payload))
        f.flush()
        os.fsync(f.fileno())


def read_records(path: Path) -> tuple[list[bytes], str | None]:
    """The records of ``path`` in order, and None or what stopped the reading: "torn" (a last record
    cut short by a crash while it was appended: expected, dropped) or a damaged record (a bit flip:
    the records before it are good, those after it cannot be trusted)."""
    data = Path(path).read_bytes()
    records, offset = [], 0
    while offset < len(data):
        if len(data) - offset < _RECORD_HEADER.size:
            return records, "torn"
        magic, length, digest = _RECORD_HEADER.unpack_from(data, offset)
        if magic != RECORD_MAGIC:
            return records, f"record {len(records)} has a damaged header"
        start = offset + _RECORD_HEADER.size
        if start + length > len(data):
            return records, "torn" if length < 1 << 40 else f"record {len(records)} has a damaged header"
        payload = data[start:start + length]
        if hashlib.sha256(payload).digest() != digest:
            return records, f"record {len(records)} fails its checksum (sha256)"
        records.append(payload)
        offset = start + length
    return records, None
