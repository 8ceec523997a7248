"""Snapshot writes: rewriting the whole snapshots.npz at every snapshot (negd 0.1) against appending one
record to snapshots.log (issue 19), side by side in one run.

    python benchmarks/snapshot_writes.py [--snapshots 51,201,501] [--append-only 10001] [--out PATH_STEM]

Rows have the shape of the shallow experiment at paper scale (N = 90 parameters, 10 stored
trajectories; negd.experiments.run.runner._stack); every write is synced to disk as the runner's
are. ``rewrite``: the old path, an atomic write of every row so far at each snapshot (O(S^2) bytes);
``append``: one checksummed record per snapshot plus one consolidation into snapshots.npz at the
end (O(S)). The checkpoint written at each snapshot is the same in both and not timed.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np

from negd.experiments.run.environment import versions
from negd.experiments.run.runner import SCALAR_KEYS, _stack
from negd.experiments.run.store import append_snapshot, consolidate, load_rows
from negd.runfiles import atomic_write_bytes
from negd.sealed import npz_bytes

N_PARAMS, N_TRAJ = 90, 10


def _row(i: int, rng: np.random.Generator) -> dict:
    row = {k: float(rng.normal()) for k in SCALAR_KEYS}
    row.update(t=1e-3 * i, ne_step=i, gd_step=i, param_mean=rng.normal(size=N_PARAMS),
               param_var=rng.random(N_PARAMS), gd_params=rng.normal(size=N_PARAMS),
               trajectories=rng.normal(size=(N_TRAJ, N_PARAMS)).astype(np.float32))
    return row


def _rewrite(folder: Path, rows: list[dict]) -> float:
    start = time.perf_counter()
    for s in range(1, len(rows) + 1):
        atomic_write_bytes(folder / "snapshots.npz", npz_bytes(_stack(rows[:s], N_TRAJ, N_PARAMS)))
    return time.perf_counter() - start


def _append(folder: Path, rows: list[dict]) -> float:
    start = time.perf_counter()
    for row in rows:
        append_snapshot(folder, _stack([row], N_TRAJ, N_PARAMS))
    consolidate(folder, _stack(rows, N_TRAJ, N_PARAMS))
    seconds = time.perf_counter() - start
    assert load_rows(folder)["t"].shape == (len(rows),)
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--snapshots", default="51,201,501")
    parser.add_argument("--append-only", default="10001", help="sizes timed with the append path only")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    both = [int(s) for s in args.snapshots.split(",") if s]
    alone = [int(s) for s in args.append_only.split(",") if s]
    rows = [_row(i, rng) for i in range(max(both + alone))]
    results = []
    for s in sorted(set(both + alone)):
        entry = {"snapshots": s}
        for name, write in (("rewrite", _rewrite), ("append", _append)):
            if name == "rewrite" and s not in both:
                continue
            with tempfile.TemporaryDirectory(dir=".") as tmp:
                entry[f"{name}_seconds"] = write(Path(tmp), rows[:s])
        if "rewrite_seconds" in entry:
            entry["speed_up"] = entry["rewrite_seconds"] / entry["append_seconds"]
        results.append(entry)
        print(json.dumps(entry))
    load = os.getloadavg()[0]
    machine = {"cpu": versions()["cpu"], "cores": os.cpu_count(), "load_average": load,
               "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), **versions()}
    lines = ["# Snapshot writes: rewrite vs append", "",
             f"Machine: {machine['cpu']}, {machine['cores']} cores (shared, load {load:.1f}), numpy "
             f"{machine['numpy']}, {machine['date']}. Rows: N = {N_PARAMS}, {N_TRAJ} trajectories; every "
             "write synced to disk.", "", "| snapshots | rewrite (s) | append (s) | rewrite / append |",
             "|---|---|---|---|"]
    for e in results:
        rewrite = f"{e['rewrite_seconds']:.2f}" if "rewrite_seconds" in e else "not timed"
        ratio = f"{e['speed_up']:.1f}" if "speed_up" in e else "-"
        lines.append(f"| {e['snapshots']:,} | {rewrite} | {e['append_seconds']:.2f} | {ratio} |")
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out is not None:
        args.out.with_suffix(".md").write_text(text)
        payload = {"machine": machine, "results": results}
        args.out.with_suffix(".json").write_text(json.dumps(payload, indent=2))


if __name__ == "__main__":
    main()
