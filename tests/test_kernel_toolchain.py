"""Fake compilers against the kernel build (issue 19, class 4): a compiler that hangs (with a child
process) is killed after NEGD_BUILD_TIMEOUT and negd falls back to torch with one warning; one that
exits 0 without output, writes garbage or writes a foreign library leaves nothing in the cache; a
held build lock is waited for a bounded time; CC with arguments (``CC="env gcc"``, like
``"ccache gcc"``) builds. The scenarios run in a subprocess (a bad dlopen must not take the test
session with it), each with a fresh cache and a fresh build module state."""

from __future__ import annotations

import ctypes.util
import json
import os
import shlex
import subprocess
import sys
import textwrap

import pytest

from negd.kernels import build, toolchain
from tests.runtools import negd_env

SCENARIOS = textwrap.dedent("""
    import fcntl, json, os, sys, time, warnings
    from pathlib import Path
    from negd.kernels import build

    fakes, root = json.loads(sys.argv[1]), sys.argv[2]
    out = {}

    def attempt(name, cache, cc, timeout="60"):
        os.environ["NEGD_CACHE"], os.environ["CC"], os.environ["NEGD_BUILD_TIMEOUT"] = cache, cc, timeout
        build._library, build._failed = None, False
        start = time.monotonic()
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            lib = build.load_library()
        kernels = Path(cache) / "kernels"
        out[name] = {"loaded": lib is not None, "seconds": time.monotonic() - start,
                     "warnings": [str(w.message) for w in caught],
                     "cached": sorted(p.name for p in kernels.glob("*.so*")) if kernels.exists() else []}

    for name in ("hangs", "silent", "garbage", "foreign"):
        attempt(name, f"{root}/cache-{name}", fakes[name], timeout="2")
    attempt("silent_then_real", f"{root}/cache-silent", fakes["with_arguments"])  # never trusts the empty one
    kernels = Path(f"{root}/cache-silent/kernels")
    for p in kernels.glob("*.so*"):
        p.unlink()
    (lock_path,) = kernels.glob("*.lock")
    with open(lock_path, "w") as held:  # another process building (stuck, or stopped)
        fcntl.flock(held, fcntl.LOCK_EX)
        attempt("lock_held", f"{root}/cache-silent", fakes["with_arguments"], timeout="1")
    print(json.dumps(out))
""")


@pytest.fixture(scope="module")
def real_cc() -> str:
    cc = build._compiler()
    if cc is None or build.kernels_disabled():
        pytest.skip("needs a C compiler and kernels enabled")
    return shlex.join(cc)


def _fake(tmp_path, name, body, real_cc):
    """A compiler whose --version is the real one's (same cache key) and whose compile runs ``body``
    (the output file is the argument after -o, in $out)."""
    path = tmp_path / name
    path.write_text(textwrap.dedent(f"""\
        #!/bin/sh
        if [ "$1" = --version ]; then exec {real_cc} --version; fi
        out=""; prev=""
        for a in "$@"; do [ "$prev" = -o ] && out="$a"; prev="$a"; done
        {body}
        """))
    path.chmod(0o755)
    return str(path)


def _sleepers(marker: str) -> list[int]:
    found = []
    for pid in os.listdir("/proc"):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                if marker.encode() in f.read():
                    found.append(int(pid))
        except (OSError, ValueError):
            pass
    return found


def test_fake_compilers_fall_back_in_one_line_and_cache_nothing(tmp_path, real_cc):
    libm = ctypes.util.find_library("m")
    libm_path = next((f"{d}/{libm}" for d in ("/lib/x86_64-linux-gnu", "/usr/lib/x86_64-linux-gnu", "/lib64")
                      if libm and os.path.exists(f"{d}/{libm}")), None)
    if libm_path is None:
        pytest.skip("libm not found")
    marker = "617.25"  # sleep's argument: finds the hanging compiler's child, if it survived
    fakes = {
        "hangs": _fake(tmp_path, "hangs", f"sleep {marker} & wait", real_cc),
        "silent": _fake(tmp_path, "silent", "exit 0", real_cc),
        "garbage": _fake(tmp_path, "garbage", 'head -c 4096 /dev/urandom > "$out"; exit 0', real_cc),
        "foreign": _fake(tmp_path, "foreign", f'cp {libm_path} "$out"; exit 0', real_cc),
        "with_arguments": f"env NEGD_FAKE_ARG=1 {real_cc}",
    }
    proc = subprocess.run([sys.executable, "-c", SCENARIOS, json.dumps(fakes), str(tmp_path)],
                          env=negd_env(), capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, (proc.returncode, proc.stderr[-2000:])
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    expected = {"hangs": "did not finish in 2 s", "silent": "wrote an empty library",
                "garbage": "not a shared library", "foreign": "lacks negd_",
                "lock_held": "held the build lock"}
    for name, words in expected.items():
        got = out[name]
        assert not got["loaded"], (name, got)
        assert len(got["warnings"]) == 1 and "\n" not in got["warnings"][0], (name, got)
        assert words in got["warnings"][0] and "using the torch path" in got["warnings"][0], (name, got)
        assert got["cached"] == [], (name, got)  # nothing trusted later
    assert out["hangs"]["seconds"] < 30  # killed after 2 s (plus start-up), not waited for
    assert out["lock_held"]["seconds"] < 30  # bounded wait: 2 x NEGD_BUILD_TIMEOUT
    assert _sleepers(marker) == []  # the compiler's child was killed with it
    real = out["silent_then_real"]
    assert real["loaded"] and real["warnings"] == [], real
    assert len(real["cached"]) == 2  # the library and its checksum


@pytest.mark.parametrize("cc, want", [
    ("ccache gcc", ["ccache", "gcc"]),
    ("env 'A B=1' /usr/bin/gcc -O0", ["env", "A B=1", "/usr/bin/gcc", "-O0"]),
    ("  gcc  ", ["gcc"])])
def test_cc_is_split_like_a_shell_command(monkeypatch, cc, want):
    monkeypatch.setenv("CC", cc)
    assert toolchain.compiler_command() == want


@pytest.mark.parametrize("value", ["0", "-1", "abc", "nan", "inf"])
def test_bad_build_timeout_is_one_line(monkeypatch, value):
    monkeypatch.setenv("NEGD_BUILD_TIMEOUT", value)
    with pytest.raises(RuntimeError, match="^NEGD_BUILD_TIMEOUT must be a positive number"):
        toolchain.build_timeout()


def test_unparseable_cc_is_one_line(monkeypatch):
    monkeypatch.setenv("CC", "gcc 'unclosed")
    with pytest.raises(RuntimeError, match="cannot be parsed"):
        toolchain.compiler_command()
