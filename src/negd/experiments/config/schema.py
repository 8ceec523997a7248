"""Experiment configuration: parsing, validation and the arms of a run.

An experiment (Whitelam et al. 2021) runs an ensemble of neuroevolution realizations from one
shared initial network next to its noiseless gradient twin, on a common time axis
t = alpha * (GD steps). One NE step counts ``lambda`` GD steps, which fixes the mutation scale:

* beta = inf:    sigma = sqrt(2 pi) * lambda * alpha   (normalized GD twin);
* finite beta:   beta sigma^2 / 2 = lambda * alpha     (plain GD twin).

A configuration file (YAML or TOML) is validated field by field; every error is one
:class:`NegdError` line ``<field>: <what is allowed>, got <value>``. Unknown keys are errors
with a did-you-mean hint. The sigma scan adds arms with sigma/f (f = 2, 4, ...) at the same
alpha, i.e. lambda/f (beta = inf) or lambda/f^2 (finite beta), with proportionally more NE
steps to reach the same t.

The twin (field ``twin``) is ``noiseless`` (one GD run; default at beta = inf) or ``langevin``
(default at finite beta): an ensemble of ``twin_realizations`` Langevin runs
x <- x - alpha grad U + (sigma/sqrt(lambda)) xi from the same x(0), whose *average* is what
finite-beta NE follows (negd.experiments.run.twin), or ``matched``: an ensemble of
:class:`negd.rules.MomentMatchedLangevin` runs, whose drift and noise are neuroevolution's exact
one-step moments for a locally linear loss at any z = beta sigma |grad U| (any beta), or
``mean-field``: an ensemble of ``twin_realizations`` (default min(8, realizations), >= 2) runs of
:class:`negd.twins.mean_field.MeanFieldTwin`, x <- x + E[dx | x] with neuroevolution's expected step
estimated from ``twin_proposals`` (M, even: antithetic pairs; default 64) proposals of the same loss,
which asks the loss for no gradient (any beta). Each run is deterministic given the seed; the runs
differ by the estimation noise of the step (variance O(sigma^2/M) per step), which the ensemble
measures and Delta's floor removes. One GD step of the time axis is 1/lambda NE steps of the twin.

The parameter dtype (field ``dtype``) is ``float32``, ``float64`` or ``auto`` (default): float64
when the smallest sigma of the run is below 100 float32 units of a parameter near 1, where float32
would quantize the moves (:func:`negd.dtypes.auto_dtype`). Losses are float64 in any case.
"""

from __future__ import annotations

import difflib
import math
from dataclasses import asdict, dataclass, field, replace
from fractions import Fraction
from pathlib import Path
from typing import Any

from negd.analysis.rundir import ENSEMBLE_TWINS
from negd.dtypes import DTYPES, auto_dtype
from negd.experiments.config.file import MAX_MESSAGE, read_config_file
from negd.losses.models import MLPSpec
from negd.tasks import REGRESSION_TASKS
from negd.validation import NegdError

__all__ = ["Arm", "ExperimentConfig", "InitConfig", "NetworkConfig", "ScanConfig", "config_from_dict",
           "load_config", "load_config_and_options", "RUN_OPTION_KEYS", "sigma_for_lambda",
           "lambda_for_sigma", "snapshot_ne_steps"]

# Largest denominator accepted for lambda: NE and GD step counts must align at every snapshot.
MAX_LAMBDA_DENOMINATOR = 1024
# Bounds of one arm: NE or GD steps, and realization-steps of NE and twin together (a typo such
# as sigma = 1e30 must be refused, not scheduled for 4e32 gradient steps).
MAX_STEPS = 10**10
MAX_WORK = 10**13
# Sizes far beyond any experiment (each would exhaust memory long before it ran).
MAX_REALIZATIONS = 10**8
MAX_SNAPSHOTS = 100_000
MAX_LAYERS = 1_000
MAX_WIDTH = 100_000
GD_RULES = ("normalized", "gradient_descent")
TWINS = ("noiseless", *ENSEMBLE_TWINS)
DEFAULT_TWIN_PROPOSALS = 64  # M of the mean-field twin: 32 antithetic pairs per step
DEFAULT_MEAN_FIELD_REALIZATIONS = 8  # R_L of the mean-field twin (at most the NE realizations, >= 2)
MAX_TWIN_PROPOSALS = 10**6
INIT_KINDS = ("paper", "torch")
DEVICES = ("cpu", "cuda")
DTYPE_CHOICES = ("auto", *DTYPES)


# --------------------------------------------------------------------------- field checks
def _number(name: str, value: Any) -> float:
    """A number; numeric strings are accepted because YAML reads ``1e-4`` as a string."""
    if isinstance(value, bool):
        raise NegdError(f"{name}: must be a number, got {_short(value)}")
    if isinstance(value, str):
        try:
            return float(value.strip())
        except ValueError:
            raise NegdError(f"{name}: must be a number, got {_short(value)}") from None
    if isinstance(value, int | float):
        try:
            return float(value)
        except OverflowError:  # an integer beyond float range
            raise NegdError(f"{name}: must be a number within float range, got {_short(value)}") from None
    raise NegdError(f"{name}: must be a number, got {_short(value)}")


def _positive(name: str, value: Any) -> float:
    try:
        v = _number(name, value)
    except NegdError:
        v = math.nan
    if not math.isfinite(v) or v <= 0:
        raise NegdError(f"{name}: must be a positive finite number, got {_short(value)}")
    return v


def _short(value: Any) -> str:
    """repr of a user's value, cut: error messages stay one short line whatever the value."""
    if isinstance(value, list | dict) and len(value) >= 50:
        return f"<{type(value).__name__} of {len(value)} items>"
    text = repr(value)
    return text if len(text) <= 80 else text[:80] + "...(truncated)"


def _integer(name: str, value: Any, minimum: int, maximum: int | None = None) -> int:
    if (isinstance(value, bool) or not isinstance(value, int | float)
            or (isinstance(value, float) and not value.is_integer())):
        raise NegdError(f"{name}: must be an integer >= {minimum}, got {_short(value)}")
    if int(value) < minimum:
        raise NegdError(f"{name}: must be an integer >= {minimum}, got {_short(value)}")
    if maximum is not None and int(value) > maximum:
        raise NegdError(f"{name}: must be an integer in [{minimum}, {maximum:.0e}], got {_short(value)}")
    return int(value)


def _choice(name: str, value: Any, allowed: tuple[str, ...]) -> str:
    if not isinstance(value, str) or value not in allowed:
        raise NegdError(f"{name}: must be one of {', '.join(allowed)}, got {_short(value)}")
    return value


def _beta(value: Any) -> float:
    if isinstance(value, str) and value.strip().lower() in ("inf", "infinity", "+inf", ".inf"):
        return math.inf
    try:
        v = _number("beta", value)
    except NegdError:
        v = math.nan
    if math.isnan(v) or v <= 0:
        raise NegdError(f"beta: must be a number > 0 or \"inf\", got {_short(value)}")
    return v


def _check_keys(section: str, data: Any, allowed: tuple[str, ...]) -> dict:
    where = f"{section}: " if section else ""
    if not isinstance(data, dict):
        raise NegdError(f"{section or 'config'}: must be a mapping of keys to values, got {_short(data)}")
    for key in data:
        if key not in allowed:
            hint = difflib.get_close_matches(str(key), allowed, n=1)
            more = f" (did you mean {hint[0]!r}?)" if hint else ""
            # a key that is not a plain name (newlines, control characters, huge) is shown by its repr
            shown = str(key) if isinstance(key, str) and key.isprintable() and len(key) <= 60 else _short(key)
            name = f"{section}.{shown}" if section else shown
            raise NegdError(f"{name}: unknown key{more}; allowed keys {where}{', '.join(allowed)}")
    return data


def _as_fraction(name: str, value: float) -> Fraction:
    """lambda as an exact small fraction p/q, so that q NE steps are exactly p GD steps."""
    frac = Fraction(value).limit_denominator(MAX_LAMBDA_DENOMINATOR)
    if frac <= 0 or abs(float(frac) - value) > 1e-9 * value:
        raise NegdError(f"{name}: lambda = {_short(value)} GD steps per NE step must be a ratio of small "
                        f"integers (e.g. 1, 1/2, 0.1) so that NE and GD snapshots align")
    return frac


# --------------------------------------------------------------------------- sigma <-> lambda
def sigma_for_lambda(lam: float, alpha: float, beta: float) -> float:
    """Mutation scale whose small-sigma twin moves ``lam`` GD steps of rate ``alpha`` per NE step."""
    if math.isinf(beta):
        return math.sqrt(2 * math.pi) * lam * alpha
    return math.sqrt(2 * lam * alpha / beta)


def lambda_for_sigma(sigma: float, alpha: float, beta: float) -> float:
    """Inverse of :func:`sigma_for_lambda`."""
    if math.isinf(beta):
        return sigma / (math.sqrt(2 * math.pi) * alpha)
    return beta * sigma**2 / (2 * alpha)


# --------------------------------------------------------------------------- dataclasses
@dataclass(frozen=True)
class NetworkConfig:
    depth: int = 1
    width: int = 30
    output_bias: bool = True

    def spec(self) -> MLPSpec:
        return MLPSpec(depth=self.depth, width=self.width, output_bias=self.output_bias)


@dataclass(frozen=True)
class InitConfig:
    """``paper``: x_i ~ N(0, sigma0^2); ``torch``: PyTorch's default nn.Linear initialization."""

    kind: str = "paper"
    sigma0: float | None = 1e-2


@dataclass(frozen=True)
class ScanConfig:
    """Extra arms sigma/f for f in ``factors``; optional shorter t_final / fewer realizations."""

    factors: tuple[float, ...] = (2.0, 4.0)
    realizations: int | None = None
    t_final: float | None = None


@dataclass(frozen=True)
class Arm:
    """One dynamics run of an experiment: NE at ``sigma`` (``lambda`` GD steps per NE step)."""

    label: str
    sigma: float
    lam: float
    ne_steps: int
    gd_steps: int
    t_final: float
    realizations: int
    snapshots: tuple[int, ...]  # NE step of every snapshot row, row 0 = step 0

    @property
    def lam_fraction(self) -> Fraction:
        return Fraction(self.lam).limit_denominator(MAX_LAMBDA_DENOMINATOR)

    def gd_step_of(self, ne_step: int) -> int:
        """GD step at the same time as NE step ``ne_step`` (exact: snapshots are aligned)."""
        value = self.lam_fraction * ne_step
        assert value.denominator == 1, "snapshot NE steps are multiples of lambda's denominator"
        return int(value)

    def to_json(self) -> dict:
        return {"label": self.label, "sigma": self.sigma, "lambda": self.lam, "ne_steps": self.ne_steps,
                "gd_steps": self.gd_steps, "t_final": self.t_final, "realizations": self.realizations,
                "snapshot_ne_steps": list(self.snapshots)}

    @staticmethod
    def from_json(d: dict) -> Arm:
        return Arm(d["label"], float(d["sigma"]), float(d["lambda"]), int(d["ne_steps"]), int(d["gd_steps"]),
                   float(d["t_final"]), int(d["realizations"]), tuple(int(s) for s in d["snapshot_ne_steps"]))


@dataclass(frozen=True)
class ExperimentConfig:
    """A validated experiment; ``arms()`` gives the main run (arm 0) and the sigma-scan arms."""

    network: NetworkConfig = field(default_factory=NetworkConfig)
    task: str = "sin2pi"
    init: InitConfig = field(default_factory=InitConfig)
    beta: float = math.inf
    alpha: float = 1e-4
    lam: float = 1.0
    gd_rule: str = "normalized"
    realizations: int = 100
    t_final: float = 1.0
    n_snapshots: int = 51
    trajectories: int = 4
    seed: int = 0
    device: str = "cpu"
    scan: ScanConfig | None = None
    experiment: str = "custom"
    scale: str = "custom"
    twin: str = "noiseless"
    twin_realizations: int | None = None  # Langevin twin only; None = realizations
    dtype: str = "float32"  # parameter dtype, resolved ("auto" is decided by config_from_dict)
    twin_proposals: int | None = None  # mean-field twin only: proposals M per twin step (even)

    @property
    def sigma(self) -> float:
        return sigma_for_lambda(self.lam, self.alpha, self.beta)

    def with_overrides(self, **changes: Any) -> ExperimentConfig:
        """A copy with some fields replaced and validated again."""
        return config_from_dict(self.to_user_dict() | changes, experiment=self.experiment, scale=self.scale)

    def to_user_dict(self) -> dict:
        """The configuration as a file would give it (lambda rather than sigma)."""
        d = {"network": asdict(self.network), "task": self.task, "init": asdict(self.init),
             "beta": "inf" if math.isinf(self.beta) else self.beta, "alpha": self.alpha, "lambda": self.lam,
             "gd_rule": self.gd_rule, "realizations": self.realizations, "t_final": self.t_final,
             "n_snapshots": self.n_snapshots, "trajectories": self.trajectories, "seed": self.seed,
             "device": self.device, "twin": self.twin, "dtype": self.dtype}
        if self.twin in ENSEMBLE_TWINS:
            d["twin_realizations"] = self.twin_realizations
        if self.twin == "mean-field":
            d["twin_proposals"] = self.twin_proposals
        if self.init.kind == "torch":
            d["init"] = {"kind": "torch"}
        if self.scan is not None:
            d["scan"] = {k: (list(v) if isinstance(v, tuple) else v)
                         for k, v in asdict(self.scan).items() if v is not None}
        return d

    def arms(self) -> list[Arm]:
        twin_r = int(self.twin_realizations or self.realizations) if self.twin in ENSEMBLE_TWINS else 1
        if self.twin == "mean-field":  # each run's work per step: the parent, M proposals, the new point
            twin_r *= int(self.twin_proposals or DEFAULT_TWIN_PROPOSALS) + 2
        arms = [_make_arm("sigma", self.lam, self.alpha, self.beta, self.t_final, self.realizations,
                          self.n_snapshots, "lambda", twin_r)]
        if self.scan is not None:
            t_final = self.scan.t_final or self.t_final
            realizations = self.scan.realizations or self.realizations
            for f in self.scan.factors:
                # sigma/f: lambda/f at beta = inf (sigma ~ lambda), lambda/f^2 at finite beta.
                lam = self.lam / (f if math.isinf(self.beta) else f * f)
                label = f"sigma/{f:g}"
                arms.append(_make_arm(label, lam, self.alpha, self.beta, t_final, realizations,
                                      self.n_snapshots, f"scan.factors ({label})", twin_r))
        return arms


def snapshot_ne_steps(ne_steps: int, unit: int, n_snapshots: int) -> tuple[int, ...]:
    """``n_snapshots`` rows (t = 0 included) of evenly spaced NE steps, multiples of ``unit``, from 0 to
    ``ne_steps``; fewer when the run has fewer aligned steps than rows."""
    units = ne_steps // unit
    intervals = n_snapshots - 1
    rows = sorted({unit * round(k * units / intervals) for k in range(intervals + 1)})
    return tuple(rows)


def _make_arm(label: str, lam: float, alpha: float, beta: float, t_final: float, realizations: int,
              n_snapshots: int, lam_field: str, twin_realizations: int = 1) -> Arm:
    """One arm, refused unless its steps reach ``t_final`` exactly and its work is bounded."""
    frac = _as_fraction(lam_field, lam)
    where = "t_final" if label == "sigma" else f"scan.t_final ({label})"
    if not t_final / alpha <= MAX_STEPS:
        raise NegdError(f"{where}: {t_final:g} needs {t_final / alpha:.3g} GD steps of alpha = {alpha:g}; "
                        f"at most {MAX_STEPS:.0e}")
    # The run must end on an aligned step: q NE steps are p GD steps.
    units = max(1, round(round(t_final / alpha) / frac.numerator))
    gd_steps, ne_steps = units * frac.numerator, units * frac.denominator
    if ne_steps > MAX_STEPS or gd_steps > MAX_STEPS:
        raise NegdError(f"{where}: {t_final:g} needs {ne_steps:.3g} NE steps and {gd_steps:.3g} GD steps at "
                        f"lambda = {lam:g} (sigma = {sigma_for_lambda(lam, alpha, beta):g}); at most "
                        f"{MAX_STEPS:.0e} each")
    if abs(gd_steps * alpha - t_final) > 1e-6 * t_final:
        quantum = frac.numerator * alpha
        raise NegdError(f"{where}: {t_final:g} is not reached exactly: NE and GD steps align every "
                        f"{frac.numerator} GD steps (lambda = {lam:g}), i.e. every {quantum:g} in t; give a "
                        f"multiple of {quantum:g}, or a smaller lambda (sigma)")
    work = realizations * ne_steps + twin_realizations * gd_steps
    if work > MAX_WORK:
        raise NegdError(f"{where}: arm {label} needs {work:.3g} realization-steps ({realizations} x "
                        f"{ne_steps} NE, {twin_realizations} x {gd_steps} twin);"
                        f" at most {MAX_WORK:.0e} per arm")
    return Arm(label, sigma_for_lambda(lam, alpha, beta), lam, ne_steps, gd_steps, gd_steps * alpha,
               realizations, snapshot_ne_steps(ne_steps, frac.denominator, n_snapshots))


# --------------------------------------------------------------------------- parsing
TOP_KEYS = ("network", "task", "init", "sigma", "lambda", "beta", "alpha", "gd_rule", "realizations",
            "t_final", "steps", "n_snapshots", "trajectories", "seed", "device", "scan", "twin",
            "twin_realizations", "twin_proposals", "dtype")


def config_from_dict(data: Any, *, experiment: str = "custom", scale: str = "custom") -> ExperimentConfig:
    """Validate a user configuration (see docs/experiments.md); raises NegdError naming the field."""
    data = _check_keys("", data, TOP_KEYS)
    net = _check_keys("network", data.get("network", {}), ("depth", "width", "output_bias"))
    output_bias = net.get("output_bias", True)
    if not isinstance(output_bias, bool):
        raise NegdError(f"network.output_bias: must be true or false, got {_short(output_bias)}")
    network = NetworkConfig(_integer("network.depth", net.get("depth", 1), 1, MAX_LAYERS),
                            _integer("network.width", net.get("width", 30), 1, MAX_WIDTH), output_bias)

    task = _choice("task", data.get("task", "sin2pi"), tuple(sorted(REGRESSION_TASKS)))

    init_d = _check_keys("init", data.get("init", {}), ("kind", "sigma0"))
    kind = _choice("init.kind", init_d.get("kind", "paper"), INIT_KINDS)
    if kind == "paper":
        init = InitConfig("paper", _positive("init.sigma0", init_d.get("sigma0", 1e-2)))
    else:
        if "sigma0" in init_d:
            raise NegdError("init.sigma0: only allowed with init.kind = paper (torch init has no scale)")
        init = InitConfig("torch", None)

    beta = _beta(data.get("beta", "inf"))
    alpha = _positive("alpha", data.get("alpha", 1e-4))
    default_rule = "normalized" if math.isinf(beta) else "gradient_descent"
    gd_rule = _choice("gd_rule", data.get("gd_rule", default_rule), GD_RULES)

    if "sigma" in data and "lambda" in data:
        raise NegdError("sigma: give either sigma or lambda, not both")
    if "sigma" in data:
        sigma = _positive("sigma", data["sigma"])
        lam = lambda_for_sigma(sigma, alpha, beta)
        frac = Fraction(lam).limit_denominator(MAX_LAMBDA_DENOMINATOR)
        if abs(float(frac) - lam) > 1e-6 * lam:
            raise NegdError(f"sigma: {_short(sigma)} means lambda = {lam:.6g} GD steps per NE step, which "
                            f"must be a ratio of small integers (e.g. 1, 1/2, 0.1); give lambda instead")
        lam = float(frac)
    else:
        lam = _positive("lambda", data.get("lambda", 1.0))
    _as_fraction("lambda", lam)

    realizations = _integer("realizations", data.get("realizations", 100), 1, MAX_REALIZATIONS)
    if "t_final" in data and "steps" in data:
        raise NegdError("t_final: give either t_final or steps (NE steps), not both")
    if "steps" in data:
        steps = _integer("steps", data["steps"], 1, MAX_STEPS)
        t_final = steps * lam * alpha
    else:
        t_final = _positive("t_final", data.get("t_final", 1.0))
    if not t_final / alpha >= 0.5:
        raise NegdError(f"t_final: {_short(t_final)} is shorter than one GD step (alpha = {alpha!r})")
    n_snapshots = _integer("n_snapshots", data.get("n_snapshots", 51), 2, MAX_SNAPSHOTS)
    trajectories = _integer("trajectories", data.get("trajectories", 4), 0)
    if trajectories > realizations:
        raise NegdError(f"trajectories: must be <= realizations ({realizations}), got {_short(trajectories)}")
    seed = _integer("seed", data.get("seed", 0), 0)
    if seed >= 2**63:
        raise NegdError(f"seed: must be an integer in [0, 2^63), got {_short(seed)}")
    device = _choice("device", data.get("device", "cpu"), DEVICES)

    scan = None
    if data.get("scan") is not None:
        scan_d = _check_keys("scan", data["scan"], ("factors", "realizations", "t_final"))
        factors = scan_d.get("factors", [2, 4])
        if not isinstance(factors, list | tuple) or not factors:
            raise NegdError(f"scan.factors: must be a non-empty list of numbers > 1, got {_short(factors)}")
        checked = []
        for f in factors:
            v = _positive("scan.factors", f)
            if v <= 1:
                raise NegdError(f"scan.factors: must be a non-empty list of numbers > 1, got "
                                f"{_short(factors)}")
            checked.append(v)
        scan_r = scan_d.get("realizations")
        scan_t = scan_d.get("t_final")
        scan_r = None if scan_r is None else _integer("scan.realizations", scan_r, 1, MAX_REALIZATIONS)
        scan = ScanConfig(tuple(checked), scan_r,
                          None if scan_t is None else _positive("scan.t_final", scan_t))
        if scan.realizations is not None and trajectories > scan.realizations:
            raise NegdError(f"scan.realizations: must be >= trajectories ({trajectories}), got "
                            f"{_short(scan_r)}")

    twin = _choice("twin", data.get("twin", "noiseless" if math.isinf(beta) else "langevin"), TWINS)
    twin_realizations = None
    if twin in ENSEMBLE_TWINS:
        # At least 2: the twin's variance (part of Delta's floor) needs two realizations.
        default = max(2, min(DEFAULT_MEAN_FIELD_REALIZATIONS, realizations)) if twin == "mean-field" \
            else realizations
        twin_realizations = _integer("twin_realizations", data.get("twin_realizations", default), 2,
                                     MAX_REALIZATIONS)
    if twin == "langevin":
        if math.isinf(beta):
            raise NegdError("twin: langevin needs a finite beta (at beta = inf the twin is noiseless "
                            "normalized GD), got 'langevin' with beta = inf")
        if gd_rule != "gradient_descent":
            raise NegdError(f"twin: langevin needs gd_rule = gradient_descent, got gd_rule = "
                            f"{_short(gd_rule)}")
    elif twin == "noiseless" and data.get("twin_realizations") is not None:
        raise NegdError(f"twin_realizations: only used with twin = langevin, matched or mean-field, got "
                        f"{_short(data['twin_realizations'])} with twin = {twin}")
    twin_proposals = None
    if twin == "mean-field":
        twin_proposals = _integer("twin_proposals", data.get("twin_proposals", DEFAULT_TWIN_PROPOSALS), 2,
                                  MAX_TWIN_PROPOSALS)
        if twin_proposals % 2:
            raise NegdError(f"twin_proposals: must be even (the mean-field twin's proposals come in "
                            f"antithetic pairs +-xi), got {_short(data.get('twin_proposals'))}")
    elif data.get("twin_proposals") is not None:
        raise NegdError(f"twin_proposals: only used with twin = mean-field, got "
                        f"{_short(data['twin_proposals'])} with twin = {twin}")

    dtype = _choice("dtype", data.get("dtype", "auto"), DTYPE_CHOICES)
    config = ExperimentConfig(network, task, init, beta, alpha, lam, gd_rule, realizations, t_final,
                              n_snapshots, trajectories, seed, device, scan, experiment, scale, twin,
                              twin_realizations, "float32" if dtype == "auto" else dtype, twin_proposals)
    arms = config.arms()  # validates that every arm's lambda aligns NE and GD steps
    if dtype == "auto":
        config = replace(config, dtype=auto_dtype(min(a.sigma for a in arms)))
    return config


# Keys of a configuration file that say how to run it, not what to compute (never in the settings):
# ``shards`` (negd.experiments.shards.inprocess) and ``grid`` (negd.experiments.sweep.grid).
RUN_OPTION_KEYS = ("shards", "grid")


def load_config(path: str | Path) -> ExperimentConfig:
    """Read (bounded: negd.experiments.config.file) and validate a YAML (.yaml/.yml) or TOML (.toml)
    configuration file; every error is one line of at most MAX_MESSAGE characters."""
    return load_config_and_options(path)[0]


def load_config_and_options(path: str | Path) -> tuple[ExperimentConfig, dict[str, Any]]:
    """:func:`load_config`, and the file's run options (RUN_OPTION_KEYS present in it, unvalidated)."""
    data = read_config_file(Path(path))
    options = {}
    if isinstance(data, dict):
        options = {k: data[k] for k in RUN_OPTION_KEYS if k in data}
        data = {k: v for k, v in data.items() if k not in RUN_OPTION_KEYS}
    try:
        return config_from_dict(data), options
    except NegdError as e:
        text = " ".join(str(e).split())
        if len(text) > MAX_MESSAGE:
            text = text[:MAX_MESSAGE] + "...(truncated)"
        raise NegdError(text) from None
