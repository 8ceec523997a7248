"""The prebuilt (wheel) kernel: built as setup.py builds it, picked by the CPU's flags, verified, bound
to torch's OpenMP runtime, and bit-identical to the first-use native build on an AVX2 machine.

The portable variants are compiled once per module (negd.kernels.recipe.build_prebuilt, the function
setup.py calls) into a temporary directory; every kernel entry point is then run on the same inputs
with the native library and with each prebuilt one, swapped in as the loaded library.
"""

from __future__ import annotations

import importlib.util
import json
import math
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import torch

from negd import MLPLoss, MLPSpec, kernels, rng
from negd.kernels import build, episodes, recipe
from negd.kernels import gradient as kgrad
from negd.validation import NegdError
from tests.runtools import negd_env

pytestmark = pytest.mark.skipif(build.kernels_disabled() or recipe.compiler() is None
                                or not recipe.portable_variants(),
                                reason="needs a C compiler, kernels enabled and an x86-64/aarch64 machine")


@pytest.fixture(scope="module")
def prebuilt(tmp_path_factory):
    out = tmp_path_factory.mktemp("prebuilt")
    manifest = recipe.build_prebuilt(out)
    return out, manifest


@pytest.fixture(scope="module")
def libraries(prebuilt):
    """{name: ctypes library}: the native build and every prebuilt variant this CPU runs."""
    out, manifest = prebuilt
    libs = {"native": build._open(build._build(recipe.compiler()))[0]}
    flags = build.cpu_flags()
    for name, entry in manifest["variants"].items():
        if set(entry["cpu_flags"]) <= flags:
            libs[name] = build._open(out / entry["file"])[0]
    return libs


def _outputs(lib) -> dict[str, torch.Tensor]:
    """Every kernel entry point on fixed inputs, computed by ``lib`` (swapped in as the loaded library)."""
    saved = build._library
    build._library = lib
    try:
        out = {}
        gen = torch.Generator().manual_seed(0)
        for spec, loss in ((MLPSpec(1, 30, output_bias=False), "mse"), (MLPSpec(3, 9, 2, 2), "mse"),
                           (MLPSpec(2, 8, 3, 4, activation="gelu"), "cross_entropy")):
            x = torch.randn(37, spec.in_features, generator=gen, dtype=torch.float64)
            y = (torch.randint(0, spec.out_features, (37,), generator=gen) if loss == "cross_entropy"
                 else torch.randn(37, spec.out_features, generator=gen, dtype=torch.float64))
            fn = MLPLoss(spec, x, y, loss=loss) if loss != "mse" else MLPLoss(spec, x, y)
            p64 = 0.5 * torch.randn(6, spec.n_params, generator=gen, dtype=torch.float64)
            for dtype in (torch.float32, torch.float64):
                params = p64.to(dtype)
                data = fn.kernel_data(params)
                key = f"{spec}-{loss}-{dtype}"
                out[f"loss {key}"] = kernels.mlp_loss(data, params)
                res = kernels.fused_neuroevolution(
                    data, params, out[f"loss {key}"], torch.zeros(6, dtype=torch.bool),
                    torch.zeros(6, dtype=torch.bool), torch.arange(6), seed=3, step=0, steps=20,
                    sigma=torch.tensor([1e-2]), beta=math.inf if dtype == torch.float32 else 50.0)
                out[f"ne params {key}"], out[f"ne loss {key}"], out[f"ne counts {key}"] = (
                    res.params, res.loss, res.counts)
                if kgrad.covers_gradient(data):
                    value, grad = kgrad.mlp_value_and_grad(data, params)
                    out[f"grad {key}"] = grad
                    lv = kgrad.fused_langevin(data, params, grad, torch.arange(6), seed=4, step=0, steps=10,
                                              alpha=1e-2, noise=1e-3, stream=2)
                    out[f"langevin {key}"] = lv.params
        for env, spec in (("CartPole-v1", MLPSpec(1, 8, 4, 2)), ("Pendulum-v1", MLPSpec(2, 6, 3, 1))):
            p64 = 0.5 * torch.randn(5, spec.n_params, generator=gen, dtype=torch.float64)
            d = episodes.STATE_SIZES[env]
            starts = 0.1 * torch.rand(5, 11, d, generator=gen, dtype=torch.float64) - 0.05
            arch = (spec.depth, spec.width, spec.in_features, spec.out_features, spec.output_bias)
            for dtype in (torch.float32, torch.float64):
                ret, length = episodes.env_rollout(env, arch, "tanh", p64.to(dtype), starts)
                out[f"env returns {env} {dtype}"], out[f"env lengths {env} {dtype}"] = ret, length
        out["normal"] = kernels.normal(5, torch.arange(7), 11, 1001)
        out["uniform"] = kernels.uniform(5, torch.arange(7), 11)
        z = torch.linspace(-12, 12, 4099, dtype=torch.float64)
        for dtype in (torch.float32, torch.float64):
            out[f"tanh {dtype}"] = kernels.tanh(z.to(dtype))
            out[f"gelu {dtype}"] = kernels.activation("gelu", z.to(dtype))
        return out
    finally:
        build._library = saved


def test_the_avx2_prebuilt_kernel_is_bit_identical_to_the_native_one(libraries):
    if "x86-64-avx2" not in libraries:
        pytest.skip("this CPU has no AVX2/FMA (or the machine is not x86-64)")
    native, portable = _outputs(libraries["native"]), _outputs(libraries["x86-64-avx2"])
    assert native.keys() == portable.keys() and len(native) > 30
    different = [k for k in native if not torch.equal(native[k], portable[k])]
    assert not different, different


def test_every_prebuilt_variant_draws_negd_rng_exactly_and_agrees_on_losses(libraries):
    """Random numbers are exact in every variant (the scalar one too); losses agree to rounding."""
    reference = rng.normal_reference(5, torch.arange(7), 11, 1001)
    native = _outputs(libraries["native"])
    for name, lib in libraries.items():
        out = _outputs(lib)
        assert torch.equal(out["normal"], reference), name
        assert torch.equal(out["uniform"], rng.uniform_reference(5, torch.arange(7), 11)), name
        for key in (k for k in out if k.startswith("loss ")):
            tol = 1e-5 if "float32" in key else 1e-12
            assert torch.allclose(out[key], native[key], rtol=tol, atol=0), (name, key)
        for key in (k for k in out if k.startswith("env ")):  # rollouts: the scalar build calls libm's sin
            tol = 1e-3 if "float32" in key else 1e-9  # and cos (~1 ulp apart), grown over 200 steps
            assert torch.allclose(out[key].double(), native[key].double(), rtol=tol, atol=0), (name, key)
        assert bool(lib.negd_has_avx2()) == (name != "x86-64" and "avx2" in build.cpu_flags()), name


def test_the_variant_is_chosen_by_the_cpu_flags_and_verified(prebuilt, tmp_path):
    out, manifest = prebuilt
    if "x86-64-avx2" not in manifest["variants"]:
        pytest.skip("not an x86-64 build")
    assert build.prebuilt_variant(out, {"avx", "avx2", "fma", "sse2"})[0] == "x86-64-avx2"
    assert build.prebuilt_variant(out, {"avx", "sse2"})[0] == "x86-64"  # no AVX2: the baseline
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    library = copy / manifest["variants"]["x86-64-avx2"]["file"]
    library.write_bytes(library.read_bytes()[:4096])
    with pytest.raises(RuntimeError, match="failed verification"):
        build.prebuilt_variant(copy, {"avx", "avx2", "fma"})
    stale = json.loads((copy / recipe.MANIFEST).read_text())
    stale["sources"] = "0" * 64
    (copy / recipe.MANIFEST).write_text(json.dumps(stale))
    with pytest.raises(RuntimeError, match="other sources"):
        build.prebuilt_variant(copy, {"avx", "avx2", "fma"})
    with pytest.raises(RuntimeError, match="no prebuilt kernel in this install"):
        build.prebuilt_variant(tmp_path / "absent")


OPENMP_PROBE = """
import json, sys, torch
from pathlib import Path
from negd.kernels import build, openmp
before = openmp.loaded_runtimes()
if sys.argv[1] == "sklearn":  # scikit-learn maps a libgomp of its own (privately)
    import sklearn.utils._openmp_helpers
with_sklearn = openmp.loaded_runtimes()
libs = [build._open(Path(p)) for p in sys.argv[2:]]
print(json.dumps({"before": before, "with_sklearn": with_sklearn, "after": openmp.loaded_runtimes(),
                  "bound": [runtime for _, runtime in libs], "resolved": openmp.resolved(),
                  "torch": str(Path(torch.__file__).resolve().parent)}))
"""


@pytest.mark.parametrize("neighbour", ["none", "sklearn"])
def test_the_kernel_links_no_openmp_runtime_and_binds_to_torchs(prebuilt, neighbour):
    """No DT_NEEDED on libgomp; loading the kernels (native and prebuilt) maps no new runtime, and their
    OpenMP calls reach torch's runtime even beside scikit-learn's own (a fresh process each)."""
    out, manifest = prebuilt
    for entry in manifest["variants"].values():
        data = (out / entry["file"]).read_bytes()
        assert b"GOMP_parallel" in data and b"libgomp.so" not in data, entry["file"]
    if neighbour == "sklearn" and importlib.util.find_spec("sklearn") is None:
        pytest.skip("scikit-learn is not installed")
    runnable = [out / e["file"] for e in manifest["variants"].values()
                if set(e["cpu_flags"]) <= build.cpu_flags()]
    native = build._build(recipe.compiler())
    proc = subprocess.run([sys.executable, "-c", OPENMP_PROBE, neighbour, str(native), *map(str, runnable)],
                          env=negd_env(), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    got = json.loads(proc.stdout.strip().splitlines()[-1])
    assert got["after"] == got["with_sklearn"], got  # the kernel loaded no runtime of its own
    torch_runtimes = [r for r in got["before"] if r.startswith(got["torch"])]
    if not torch_runtimes:
        pytest.skip(f"this torch maps no OpenMP runtime of its own ({got['before']})")
    assert got["resolved"] == str(Path(torch_runtimes[0]).resolve()), got
    assert set(got["bound"]) == {got["resolved"]}, got


def _load_fresh(monkeypatch, **env):
    """load_library() from scratch with ``env`` set (the module's loaded library restored afterwards)."""
    monkeypatch.setattr(build, "_library", None)
    monkeypatch.setattr(build, "_failed", False)
    monkeypatch.setattr(build, "_info", {})
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        lib = build.load_library()
    return lib, build.kernel_info(), [str(w.message) for w in caught]


def test_negd_kernel_picks_the_library(prebuilt, monkeypatch):
    out, manifest = prebuilt
    monkeypatch.setattr(build, "PREBUILT_DIR", out)
    best = next(name for name, e in manifest["variants"].items() if set(e["cpu_flags"]) <= build.cpu_flags())
    lib, info, caught = _load_fresh(monkeypatch, NEGD_KERNEL="auto")
    assert lib is not None and (info["kind"], info["variant"]) == ("prebuilt", best) and not caught
    lib, info, caught = _load_fresh(monkeypatch, NEGD_KERNEL="native")
    assert lib is not None and info["kind"] == "native" and not caught
    monkeypatch.setattr(build, "PREBUILT_DIR", out / "absent")  # an editable install: no prebuilt library
    lib, info, caught = _load_fresh(monkeypatch, NEGD_KERNEL="auto")
    assert info["kind"] == "native" and not caught  # the first-use build, silently
    lib, info, caught = _load_fresh(monkeypatch, NEGD_KERNEL="prebuilt")
    assert lib is None and info["kind"] == "torch" and len(caught) == 1
    assert "no prebuilt kernel in this install" in caught[0] and "using the torch path" in caught[0]
    with pytest.raises(NegdError, match="NEGD_KERNEL"):
        _load_fresh(monkeypatch, NEGD_KERNEL="fastest")
