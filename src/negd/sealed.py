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
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import torch

__all__ = ["DIGEST_KEY", "content_digest", "seal", "digest_problem", "seal_arrays", "arrays_problem",
           "legacy_note", "record", "append_record", "read_records", "npz_bytes", "npz_arrays"]

DIGEST_KEY = "sha256"
RECORD_MAGIC = b"NEGDREC1"
# magic, payload length, SHA-256 of the payload, CRC-32 of those three: a flipped bit in the length is
# a damaged header, never mistaken for the torn last record that a crash while appending leaves.
_RECORD_HEADER = struct.Struct(">8sQ32sI")
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


def digest_problem(payload: dict, legacy_keys: frozenset[str] | None = None) -> str | None:
    """None when ``payload``'s digest matches; "no checksum" or the mismatch otherwise. Without a digest,
    a payload with a key outside ``legacy_keys`` (the keys files from before checksums hold) is damaged:
    a flipped bit in the name of the digest's own key must not pass for an old file."""
    if DIGEST_KEY not in payload:
        unexpected = set(payload) - legacy_keys if legacy_keys is not None else set()
        if unexpected:
            return f"is damaged (no checksum, unexpected key {sorted(map(repr, unexpected))[0][:40]})"
        return _renamed_digest(payload) or "no checksum"
    body = {k: v for k, v in payload.items() if k != DIGEST_KEY}
    try:
        ok = payload[DIGEST_KEY] == content_digest(body)
    except TypeError:  # a type that no negd file holds
        ok = False
    return None if ok else "fails its checksum (sha256): the file is damaged"


def seal_arrays(arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """``arrays`` with the digest of the others as a uint8[32] array under DIGEST_KEY."""
    body = {k: v for k, v in arrays.items() if k != DIGEST_KEY}
    # First in the archive: damage to the zip directory that drops members drops the later ones, so
    # the digest stays and names what is missing (a file without it would pass for an old one).
    return {DIGEST_KEY: np.frombuffer(bytes.fromhex(content_digest(body)), dtype=np.uint8)} | body


def _renamed_digest(keys) -> str | None:
    """A key one character away from DIGEST_KEY: its name took a flipped bit (the file is damaged)."""
    for key in keys:
        if isinstance(key, str) and len(key) == len(DIGEST_KEY) and \
                sum(a != b for a, b in zip(key, DIGEST_KEY)) == 1:
            return f"is damaged (no checksum, but a key {key[:10]!r})"
    return None


def arrays_problem(arrays: dict[str, np.ndarray]) -> str | None:
    """As :func:`digest_problem`, for arrays sealed by :func:`seal_arrays`."""
    if DIGEST_KEY not in arrays:
        return _renamed_digest(arrays) or "no checksum"
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
    head = struct.pack(">8sQ32s", RECORD_MAGIC, len(payload), hashlib.sha256(payload).digest())
    return head + struct.pack(">I", zlib.crc32(head)) + payload


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
        magic, length, digest, crc = _RECORD_HEADER.unpack_from(data, offset)
        if magic != RECORD_MAGIC or crc != zlib.crc32(data[offset:offset + _RECORD_HEADER.size - 4]):
            return records, f"record {len(records)} has a damaged header"
        start = offset + _RECORD_HEADER.size
        if start + length > len(data):
            return records, "torn"
        payload = data[start:start + length]
        if hashlib.sha256(payload).digest() != digest:
            return records, f"record {len(records)} fails its checksum (sha256)"
        records.append(payload)
        offset = start + length
    return records, None
