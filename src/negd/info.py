"""What computes here: the kernel in use (prebuilt, native or the torch fallback), torch, CUDA and Ray.

``negd info`` prints :func:`info_lines`; :func:`environment` is the same as a dict. Ray is looked up
by its installed metadata, not imported (importing it takes seconds and starts nothing useful here).
"""

from __future__ import annotations

import platform
import sys
from importlib import metadata

__all__ = ["environment", "info_lines", "TORCH_SLOWDOWN"]

# The torch path's wall time against the kernel's (issue 16: a 3.1 s run took 1 min 39 s; docs/kernels.md).
TORCH_SLOWDOWN = "25-50x"

_ISA = {"native": "-march=native build for this CPU", "x86-64-avx2": "x86-64 + AVX2/FMA (portable)",
        "x86-64": "x86-64 baseline (portable, scalar: no AVX2 on this CPU)", "aarch64": "aarch64 (scalar)"}


def _version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def environment() -> dict:
    """Versions, the kernel's description (negd.kernels.build.kernel_info) and CUDA's availability."""
    import torch

    import negd
    from negd.kernels import KERNEL_DTYPES
    from negd.kernels.build import kernel_info

    kernel = kernel_info()
    cuda = torch.cuda.is_available()
    return {
        "negd": negd.__version__, "python": sys.version.split()[0], "platform": platform.platform(),
        "kernel": kernel, "kernel_dtypes": [str(d).removeprefix("torch.") for d in KERNEL_DTYPES],
        "threads": torch.get_num_threads(), "torch": torch.__version__,
        "cuda": {"available": cuda, "built_with": torch.version.cuda,
                 "devices": [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
                 if cuda else []},
        "ray": _version("ray"),
    }


def info_lines(env: dict | None = None) -> list[str]:
    """The lines ``negd info`` prints."""
    env = environment() if env is None else env
    k = env["kernel"]
    if k.get("kind") == "torch":
        kernel = [f"kernel:   torch fallback, {TORCH_SLOWDOWN} slower than the C kernel ({k.get('reason')})"]
    else:
        name = "native" if k["kind"] == "native" else f"prebuilt {k['variant']}"
        kernel = [f"kernel:   {name} ({_ISA.get(k['variant'], k['variant'])}; "
                  f"{'AVX2 vectors' if k.get('avx2') else 'scalar code'}), NEGD_KERNEL={k.get('mode')}",
                  f"          {k['library']}",
                  f"          threads {env['threads']} (torch.get_num_threads), OpenMP runtime "
                  f"{k.get('openmp')} ({len(k.get('openmp_runtimes', []))} in this process)",
                  f"          parameter dtypes {', '.join(env['kernel_dtypes'])}; losses float64"]
    cuda = env["cuda"]
    if cuda["available"]:
        devices = ", ".join(cuda["devices"])
        cuda_line = f"CUDA:     {cuda['built_with']}, {len(cuda['devices'])} device(s): {devices}"
    else:
        built = f"built with CUDA {cuda['built_with']}" if cuda["built_with"] else "a CPU-only build"
        cuda_line = f"CUDA:     not available (torch is {built})"
    ray = env["ray"]
    return [f"negd:     {env['negd']} (Python {env['python']}, {env['platform']})", *kernel,
            f"torch:    {env['torch']}", cuda_line,
            f"Ray:      {ray}" if ray else "Ray:      not installed (pip install 'negd[ray]' for --ray)"]
