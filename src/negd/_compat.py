"""The module paths of negd 0.1, kept for one release after the layout moved (CHANGELOG.md).

``import negd.models`` and ``from negd.ensemble import MLPLoss`` still work: a finder on
``sys.meta_path`` answers each old path with its new module (or, where the definitions of one old
module now live in two, a module holding the names of both) and warns once with a
``DeprecationWarning`` naming the new path. Nothing here is imported statically, so the old paths
add no edge to the import graph (tests/test_imports.py).
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys
import types
import warnings

__all__ = ["MOVED", "install"]

_EXPERIMENTS_RUN = ("runner", "restore", "lock", "provenance", "environment", "problem", "twin")

# old path -> new paths; the first one is named in the warning
MOVED: dict[str, tuple[str, ...]] = {
    "negd.theory_population": ("negd.theory.population",),
    "negd.theory_hessian": ("negd.theory.hessian",),
    "negd.theory_minibatch": ("negd.theory.minibatch",),
    "negd.models": ("negd.losses.models",),
    "negd.ensemble": ("negd.losses.module", "negd.losses.mlp"),
    "negd.sequential": ("negd.losses.sequential",),
    "negd.backprop": ("negd.losses.backprop",),
    "negd.minibatch": ("negd.losses.minibatch",),
    "negd.regime": ("negd.diagnostics.regime", "negd.losses.base"),
    "negd.resolution": ("negd.diagnostics.resolution", "negd.dtypes"),
    "negd.rules.gradient": ("negd.twins.gradient",),
    "negd.rules.matched": ("negd.twins.matched",),
    "negd.rules.curvature": ("negd.twins.curvature",),
    "negd.rules.adaptive_twin": ("negd.twins.adaptive_twin",),
    "negd.analysis.runfiles": ("negd.runfiles",),
    **{f"negd.experiments.{m}": (f"negd.experiments.run.{m}",) for m in _EXPERIMENTS_RUN},
    "negd.experiments.store": ("negd.experiments.run.store", "negd.runfiles"),
    "negd.experiments.config_file": ("negd.experiments.config.file",),
    "negd.experiments.presets": ("negd.experiments.config.presets",),
    "negd.experiments.shard_files": ("negd.experiments.shards.files",),
    "negd.experiments.shard_task": ("negd.experiments.shards.task",),
    "negd.experiments.shard_job": ("negd.experiments.shards.job",),
    "negd.experiments.ray_shards": ("negd.experiments.shards.on_ray",),
    "negd.experiments.sweep_report": ("negd.experiments.sweep.report",),
    "negd.experiments.classification_report": ("negd.analysis.classification_report",),
    "negd.experiments.variants_report": ("negd.analysis.variants_report",),
}


class _OldPaths(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    def find_spec(self, fullname: str, path, target=None):  # noqa: ANN001 (importlib's signature)
        if fullname in MOVED:
            return importlib.util.spec_from_loader(fullname, self)
        return None

    def create_module(self, spec) -> types.ModuleType:  # noqa: ANN001
        new = MOVED[spec.name]
        warnings.warn(f"{spec.name} moved to {new[0]} after negd 0.1.0; the old path will be removed",
                      DeprecationWarning, stacklevel=4)
        if len(new) == 1:
            return importlib.import_module(new[0])
        merged = types.ModuleType(spec.name, f"Names of {spec.name} (negd 0.1), now in {', '.join(new)}.")
        for name in reversed(new):  # the first module's names win
            merged.__dict__.update({k: v for k, v in vars(importlib.import_module(name)).items()
                                    if not k.startswith("__")})
        return merged

    def exec_module(self, module: types.ModuleType) -> None:
        pass  # create_module returned a module whose code already ran


def install() -> None:
    """Put the finder of old paths on ``sys.meta_path`` (once)."""
    if not any(isinstance(f, _OldPaths) for f in sys.meta_path):
        sys.meta_path.append(_OldPaths())
