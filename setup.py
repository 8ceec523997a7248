"""Build hook: compile the C kernel into the wheel (negd/kernels/prebuilt/), one library per portable
variant (negd.kernels.recipe), and tag the wheel py3-none-<platform>: the kernel is loaded with ctypes,
so it depends on the platform but not on the Python version or ABI.

NEGD_PREBUILT=0 builds a pure wheel without it (the kernel is then compiled on first use, or torch
runs). An editable install (pip install -e .) never compiles here: it compiles on first use.
Everything else is in pyproject.toml.
"""

import importlib.util
import os
from pathlib import Path

from setuptools import Distribution, setup
from setuptools.command.build_py import build_py

try:
    from setuptools.command.bdist_wheel import bdist_wheel
except ImportError:  # setuptools < 70.1
    from wheel.bdist_wheel import bdist_wheel

_spec = importlib.util.spec_from_file_location(
    "_negd_kernel_recipe", Path(__file__).parent / "src" / "negd" / "kernels" / "recipe.py")
recipe = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(recipe)  # the recipe alone: neither torch nor negd is importable here


def _prebuilt_wanted() -> bool:
    return os.environ.get("NEGD_PREBUILT", "1").strip() not in ("0", "")


class BuildPyWithKernel(build_py):
    def run(self):
        super().run()
        if getattr(self, "editable_mode", False) or not _prebuilt_wanted():
            return
        out = Path(self.build_lib) / "negd" / "kernels" / "prebuilt"
        try:
            manifest = recipe.build_prebuilt(out)
        except RuntimeError as exc:
            raise SystemExit(f"negd: cannot build the prebuilt kernel ({exc}); set NEGD_PREBUILT=0 for a "
                             "wheel without it (compiled on first use, else the slower torch path)") from None
        print(f"negd: prebuilt kernel variants {', '.join(manifest['variants'])} in {out}")


class KernelDistribution(Distribution):
    def has_ext_modules(self):  # a platform library inside: installed to platlib, wheel root not pure
        return _prebuilt_wanted()


class PlatformWheel(bdist_wheel):
    def get_tag(self):
        python, abi, plat = super().get_tag()
        return ("py3", "none", plat) if _prebuilt_wanted() else (python, abi, plat)


setup(distclass=KernelDistribution, cmdclass={"build_py": BuildPyWithKernel, "bdist_wheel": PlatformWheel})
