"""Shard clean-up (negd.experiments.shards.files.clear_shard_files) deletes only the files negd wrote,
by name, and never through a symbolic link (issue 19, class 6)."""

from __future__ import annotations

import os

import pytest

from negd.experiments.config.schema import config_from_dict
from negd.experiments.run.runner import run_experiment
from negd.experiments.shards.files import clear_shard_files, shard_folder

TINY = {"network": {"depth": 1, "width": 4, "output_bias": False}, "task": "sin2pi",
        "init": {"kind": "paper", "sigma0": 0.1}, "beta": "inf", "alpha": 1e-3, "lambda": 1,
        "realizations": 5, "t_final": 0.02, "n_snapshots": 3, "trajectories": 2, "seed": 5, "scan": None}
OWN = ("ne-0-4.pt", "ne-0-4.progress", "twin-4-7.pt", ".ne-0-4.pt.k3j_x.tmp", ".ne-0-4.progress.123.tmp")
FOREIGN = ("notes.txt", "ne-0-4.pt.bak", "ne-0-4.pt~", "my-0-4.pt", "ne-a-4.pt", "NE-0-4.pt")


def test_deletes_own_names_only(tmp_path):
    folder = tmp_path / "shards"
    folder.mkdir()
    for name in OWN + FOREIGN:
        (folder / name).write_bytes(b"x")
    (folder / "ne-9-10.pt").mkdir()  # a folder of a shard file's name: not a file negd wrote
    clear_shard_files(folder)
    assert sorted(p.name for p in folder.iterdir()) == sorted(FOREIGN + ("ne-9-10.pt",))


def test_never_through_a_link(tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    for name in ("ne-0-4.pt", "twin-0-4.progress"):
        (outside / name).write_bytes(b"precious")
    # a link to a file, named like a shard file
    folder = tmp_path / "run" / "shards"
    folder.mkdir(parents=True)
    os.symlink(outside / "ne-0-4.pt", folder / "ne-0-8.pt")
    clear_shard_files(folder)
    assert (folder / "ne-0-8.pt").is_symlink() and (outside / "ne-0-4.pt").read_bytes() == b"precious"
    # the shards folder itself a link, and a link to the arm folder above it
    linked = tmp_path / "linked"
    os.symlink(outside, linked)
    clear_shard_files(linked)
    arm = tmp_path / "arm"
    os.symlink(outside.parent / "run", arm)
    clear_shard_files(arm / "shards")
    assert sorted(p.name for p in outside.iterdir()) == ["ne-0-4.pt", "twin-0-4.progress"]


@pytest.mark.parametrize("shards", [1, 3])
def test_sharded_run_keeps_foreign_files_and_link_targets(tmp_path, shards):
    """A run that cleans its shard folder after every interval leaves a user's file there, a link and
    the link's target untouched."""
    outside = tmp_path / "outside.pt"
    outside.write_bytes(b"precious")
    run_dir = tmp_path / "run"

    def plant(index: int, row: int) -> None:
        folder = shard_folder(run_dir, index)
        folder.mkdir(parents=True, exist_ok=True)
        if not (folder / "mine.txt").exists():
            (folder / "mine.txt").write_text("a user's file")
            os.symlink(outside, folder / "ne-0-1.pt")

    result = run_experiment(config_from_dict(TINY), run_dir, progress=False, report=False, shards=shards,
                            on_snapshot=plant)
    assert result.state == "complete"
    for index in (0,):
        folder = shard_folder(run_dir, index)
        assert sorted(p.name for p in folder.iterdir()) == ["mine.txt", "ne-0-1.pt"]
    assert outside.read_bytes() == b"precious"
