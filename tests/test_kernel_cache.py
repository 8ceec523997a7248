"""The kernel cache is verified before it is loaded (issue 11, defect 2): a truncated cached library
killed every run with SIGBUS, silently; a foreign one (a copy of libm) gave an AttributeError
traceback. Now each falls back (or is rebuilt) with exactly one warning.

The scenarios run in a subprocess: if verification failed, dlopen of the truncated file would
kill the interpreter, which must not take the test session with it.
"""

from __future__ import annotations

import ctypes.util
import json
import os
import subprocess
import sys
import textwrap

import pytest

from negd.kernels import build
from tests.runtools import negd_env

SCENARIOS = textwrap.dedent("""
    import json, os, shutil, sys, warnings
    from pathlib import Path
    from negd.kernels import build

    real, libm, fake_cc, root = sys.argv[1:5]
    out = {}

    def attempt(name, cache, cc):
        os.environ["NEGD_CACHE"] = cache
        os.environ["CC"] = cc
        build._library, build._failed = None, False
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            lib = build.load_library()
        out[name] = {"loaded": lib is not None, "warnings": [str(w.message) for w in caught]}

    def seed(cache, content):
        target = Path(cache) / "kernels" / Path(real).name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(content)
        shutil.copy(real + ".sha256", str(target) + ".sha256")
        return target

    real_bytes = Path(real).read_bytes()
    seed(root + "/a", real_bytes[:5000])                 # truncated, no working compiler
    attempt("truncated_no_compiler", root + "/a", fake_cc)
    seed(root + "/b", real_bytes[:5000])                 # truncated, compiler available
    attempt("truncated_rebuilt", root + "/b", os.environ["REAL_CC"])
    target = seed(root + "/c", Path(libm).read_bytes())  # foreign library with a matching checksum
    Path(str(target) + ".sha256").write_text(build._fingerprint(target.read_bytes()))
    attempt("foreign", root + "/c", os.environ["REAL_CC"])
    print(json.dumps(out))
""")


@pytest.fixture(scope="module")
def verified_library() -> str:
    cc = build._compiler()
    if cc is None or build.kernels_disabled():
        pytest.skip("needs a C compiler and kernels enabled")
    return cc, str(build._build(cc))


def test_truncated_or_foreign_cached_library_falls_back_with_one_warning(tmp_path, verified_library):
    cc, real = verified_library
    libm = ctypes.util.find_library("m")
    candidates = [f"{d}/{libm}" for d in ("/lib/x86_64-linux-gnu", "/usr/lib/x86_64-linux-gnu", "/lib64",
                                          "/usr/lib")]
    libm_path = next((p for p in candidates if libm and os.path.exists(p)), None)
    if libm_path is None:
        pytest.skip("libm not found")
    fake_cc = tmp_path / "fakecc"
    # Same --version as the real compiler (so the cache key is the same), fails to compile.
    real_cc = ' '.join(cc)
    fake_cc.write_text(f"#!/bin/sh\nif [ \"$1\" = --version ]; then exec {real_cc} --version; fi\nexit 1\n")
    fake_cc.chmod(0o755)
    proc = subprocess.run([sys.executable, "-c", SCENARIOS, real, libm_path, str(fake_cc), str(tmp_path)],
                          env=negd_env(REAL_CC=" ".join(cc)), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, (proc.returncode, proc.stderr[-2000:])  # -7 / 135 would be SIGBUS
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    for name, loaded in (("truncated_no_compiler", False), ("truncated_rebuilt", True), ("foreign", True)):
        assert out[name]["loaded"] is loaded, (name, out[name])
        assert len(out[name]["warnings"]) == 1, (name, out[name])
    assert "failed verification" in out["truncated_no_compiler"]["warnings"][0]
    assert "was rebuilt" in out["truncated_rebuilt"]["warnings"][0]
    # a foreign library with a matching checksum loads but lacks the symbols: rebuilt, once
    assert "not a usable kernel library" in out["foreign"]["warnings"][0]
    assert "was rebuilt" in out["foreign"]["warnings"][0]
    assert build.verified(tmp_path / "b" / "kernels" / build.Path(real).name)
