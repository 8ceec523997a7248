"""Configuration files and presets: every bad field is one NegdError naming it (YAML and TOML)."""

from __future__ import annotations

import math
import re

import pytest

from negd.experiments.config.presets import EXPERIMENTS, SCALES, preset
from negd.experiments.config.schema import config_from_dict, load_config, sigma_for_lambda, snapshot_ne_steps
from negd.validation import NegdError

GOOD = {"network": {"depth": 1, "width": 4, "output_bias": False}, "task": "sin2pi",
        "init": {"kind": "paper", "sigma0": 0.1}, "beta": "inf", "alpha": 1e-3, "lambda": 1,
        "realizations": 8, "t_final": 0.05, "n_snapshots": 6, "trajectories": 2, "seed": 3,
        "scan": {"factors": [2, 4], "realizations": 4}}


def _with(**changes):
    d = {k: (dict(v) if isinstance(v, dict) else v) for k, v in GOOD.items()}
    for key, value in changes.items():
        if "." in key:
            section, sub = key.split(".")
            d[section][sub] = value
        elif value is _DROP:
            d.pop(key)
        else:
            d[key] = value
    return d


_DROP = object()


def test_good_config_and_arms():
    c = config_from_dict(GOOD)
    arms = c.arms()
    assert [a.label for a in arms] == ["sigma", "sigma/2", "sigma/4"]
    # beta = inf: sigma = sqrt(2 pi) lambda alpha; scan halves lambda and doubles the NE steps.
    assert arms[0].sigma == pytest.approx(math.sqrt(2 * math.pi) * 1e-3)
    assert [a.lam for a in arms] == [1.0, 0.5, 0.25]
    assert [a.ne_steps for a in arms] == [50, 100, 200]
    assert all(a.gd_steps == 50 and a.t_final == pytest.approx(0.05) for a in arms)
    assert [a.realizations for a in arms] == [8, 4, 4]
    assert arms[0].snapshots == (0, 10, 20, 30, 40, 50)
    assert all(a.gd_step_of(a.snapshots[-1]) == 50 for a in arms)


def test_finite_beta_sigma_relation_and_scan():
    c = config_from_dict(_with(beta=1000, gd_rule="gradient_descent"))
    arms = c.arms()
    # beta sigma^2 / 2 = lambda alpha; sigma/2 is lambda/4 at finite beta.
    for a in arms:
        assert 1000 * a.sigma**2 / 2 == pytest.approx(a.lam * 1e-3)
    assert [a.lam for a in arms] == [1.0, 0.25, 0.0625]
    assert arms[1].sigma == pytest.approx(arms[0].sigma / 2)


def test_sigma_given_instead_of_lambda():
    c = config_from_dict(_with(**{"lambda": _DROP}, sigma=sigma_for_lambda(0.1, 1e-3, math.inf)))
    assert c.lam == pytest.approx(0.1)
    with pytest.raises(NegdError, match=r"^sigma: .*lambda"):
        config_from_dict(_with(**{"lambda": _DROP}, sigma=2.5e-3))  # lambda = 0.9973..., not a ratio


def test_lambda_fraction_aligns_snapshots():
    c = config_from_dict(_with(**{"lambda": 0.1}, t_final=0.05, n_snapshots=6))
    arm = c.arms()[0]
    assert arm.ne_steps == 500 and arm.gd_steps == 50
    assert all(s % 10 == 0 for s in arm.snapshots)
    c = config_from_dict(_with(**{"lambda": 3}, t_final=0.051))
    arm = c.arms()[0]
    assert arm.gd_steps % 3 == 0 and arm.gd_step_of(arm.ne_steps) == arm.gd_steps
    assert arm.t_final == pytest.approx(0.051, rel=1e-12)
    # 50 GD steps are not a multiple of lambda = 3: refused rather than run to another t_final
    with pytest.raises(NegdError, match="t_final: 0.05 is not reached exactly"):
        config_from_dict(_with(**{"lambda": 3}, t_final=0.05))
    assert snapshot_ne_steps(4, 1, 11) == (0, 1, 2, 3, 4)  # fewer steps than rows


@pytest.mark.parametrize("field,value", [
    ("alpha", -1), ("alpha", "abc"), ("alpha", 0), ("lambda", math.nan), ("lambda", 1 / 3000),
    ("beta", 0), ("beta", "hot"), ("realizations", 0), ("realizations", 2.5), ("t_final", -1),
    ("n_snapshots", 1), ("trajectories", 9), ("seed", -1), ("device", "tpu"), ("task", "cos"),
    ("gd_rule", "adam"), ("network.depth", 0), ("network.width", "wide"), ("network.output_bias", "yes"),
    ("init.kind", "xavier"), ("init.sigma0", -0.1), ("scan.factors", [0.5]), ("scan.realizations", 1),
    ("scan", [2, 4]),
])
def test_each_bad_field_is_named(field, value):
    with pytest.raises(NegdError, match=rf"^{field.replace('.', '[.]')}: "):
        config_from_dict(_with(**{field: value}))


def test_exact_message_format():
    with pytest.raises(NegdError) as e:
        config_from_dict(_with(**{"lambda": _DROP}, sigma=-1))
    assert str(e.value) == "sigma: must be a positive finite number, got -1"


def test_unknown_keys_with_hint():
    with pytest.raises(NegdError, match=r"^sigmaa: unknown key \(did you mean 'sigma'\?\)"):
        config_from_dict(_with(sigmaa=1))
    with pytest.raises(NegdError, match=r"^network[.]widht: unknown key \(did you mean 'width'\?\)"):
        config_from_dict(_with(**{"network.widht": 3}))
    with pytest.raises(NegdError, match="^sigma: give either sigma or lambda"):
        config_from_dict(_with(sigma=1e-3))
    with pytest.raises(NegdError, match="^t_final: give either t_final or steps"):
        config_from_dict(_with(steps=10))


def test_steps_instead_of_t_final():
    c = config_from_dict(_with(t_final=_DROP, steps=40))
    assert c.arms()[0].ne_steps == 40 and c.t_final == pytest.approx(0.04)


YAML_GOOD = """
network: {depth: 1, width: 4, output_bias: false}
task: sin2pi
init: {kind: paper, sigma0: 0.1}
beta: inf
alpha: 1e-3     # PyYAML reads this as a string; numeric strings are accepted
lambda: 1
realizations: 8
t_final: 0.05
"""

TOML_GOOD = """
task = "sin2pi"
beta = 1000.0
alpha = 1e-3
lambda = 0.5
realizations = 8
steps = 20
[network]
depth = 2
width = 3
[init]
kind = "torch"
[scan]
factors = [2]
"""


def test_yaml_and_toml_files(tmp_path):
    (tmp_path / "a.yaml").write_text(YAML_GOOD)
    c = load_config(tmp_path / "a.yaml")
    assert c.alpha == 1e-3 and math.isinf(c.beta) and c.gd_rule == "normalized"
    (tmp_path / "b.toml").write_text(TOML_GOOD)
    c = load_config(tmp_path / "b.toml")
    assert c.beta == 1000 and c.gd_rule == "gradient_descent" and c.init.kind == "torch"
    assert c.network.depth == 2 and len(c.arms()) == 2


@pytest.mark.parametrize("suffix,text,pattern", [
    (".yaml", YAML_GOOD.replace("lambda: 1", "lambda: -2"), r"^lambda: "),
    (".yaml", YAML_GOOD + "realisations: 5\n", r"^realisations: unknown key \(did you mean 'realizations'"),
    (".yaml", "alpha: [1, \n", r"^config: a.yaml is not valid YAML"),
    (".yaml", "", r"^config: a.yaml is empty"),
    (".yaml", "- 1\n- 2\n", r"^config: must be a mapping"),
    (".toml", TOML_GOOD.replace("width = 3", "width = 0"), r"^network[.]width: "),
    (".toml", TOML_GOOD + "colour = 1\n", r"^scan[.]colour: unknown key"),
    (".toml", "alpha = = 1", r"^config: a.toml is not valid TOML"),
    (".json", "{}", r"^config: file must end in"),
])
def test_bad_files(tmp_path, suffix, text, pattern):
    path = tmp_path / f"a{suffix}"
    path.write_text(text)
    with pytest.raises(NegdError, match=pattern):
        load_config(path)


def test_missing_file(tmp_path):
    with pytest.raises(NegdError, match="^config: no such file"):
        load_config(tmp_path / "nope.yaml")


@pytest.mark.parametrize("name", list(EXPERIMENTS))
@pytest.mark.parametrize("scale", SCALES)
def test_presets_follow_the_paper(name, scale):
    c = preset(name, scale)
    spec = c.network.spec()
    assert spec.n_params == {"shallow": 90, "deep": 7489, "finite-beta": 769}[name]
    arms = c.arms()
    assert len(arms) == 3
    # The scan arms end on a snapshot time of arm 0, so Delta can be compared at a common t.
    assert any(abs(t - arms[1].t_final) < 1e-12 for t in (s * c.alpha * c.lam for s in arms[0].snapshots))
    if name == "finite-beta":
        assert c.beta == 1000 and c.gd_rule == "gradient_descent"
    else:
        assert math.isinf(c.beta) and c.gd_rule == "normalized"
    if scale == "paper":
        assert c.alpha == {"shallow": 1e-5, "deep": 1e-4, "finite-beta": 1e-4}[name]
        assert c.realizations == {"shallow": 1000, "deep": 100, "finite-beta": 1000}[name]


def test_preset_overrides():
    c = preset("shallow", realizations=3, seed=7, scan=False)
    assert c.realizations == 3 and c.seed == 7 and c.scan is None and len(c.arms()) == 1
    assert c.trajectories <= 3
    with pytest.raises(NegdError, match="^realizations: "):
        preset("shallow", realizations=0)
    with pytest.raises(NegdError, match="^experiment: "):
        preset("medium")


def test_twin_defaults_and_validation():
    assert config_from_dict(GOOD).twin == "noiseless"  # beta = inf
    finite = config_from_dict(_with(beta=1000))
    assert finite.twin == "langevin" and finite.twin_realizations == 8  # default: realizations
    assert config_from_dict(_with(beta=1000, twin_realizations=3)).twin_realizations == 3
    noiseless = config_from_dict(_with(beta=1000, twin="noiseless"))
    assert noiseless.twin == "noiseless" and noiseless.twin_realizations is None
    # The user dict round-trips the field (resume relies on it).
    assert config_from_dict(finite.to_user_dict()) == finite
    assert "twin_realizations" not in noiseless.to_user_dict()
    # The matched twin is an ensemble at any beta, with any gd_rule (its drift follows sigma, beta).
    matched = config_from_dict(_with(twin="matched", twin_realizations=3))
    assert matched.twin == "matched" and matched.twin_realizations == 3
    assert config_from_dict(matched.to_user_dict()) == matched



def test_mean_field_twin_is_an_ensemble_at_any_beta():
    for beta in ("inf", 1000):
        mf = config_from_dict(_with(beta=beta, twin="mean-field"))
        assert mf.twin == "mean-field" and mf.twin_proposals == 64 and mf.twin_realizations == 8
        assert config_from_dict(mf.to_user_dict()) == mf  # resume relies on the round trip
        assert mf.to_user_dict()["twin_proposals"] == 64 and mf.to_user_dict()["twin_realizations"] == 8
    assert config_from_dict(_with(twin="mean-field", realizations=3, trajectories=1)).twin_realizations == 3
    assert config_from_dict(_with(twin="mean-field", realizations=1, trajectories=1)).twin_realizations == 2
    mf = config_from_dict(_with(twin="mean-field", twin_proposals=8, twin_realizations=3))
    assert (mf.twin_proposals, mf.twin_realizations) == (8, 3)
    assert mf.arms()[0] == config_from_dict(GOOD).arms()[0]
    # a noiseless configuration's user dict (its settings hash) is unchanged by the new field
    assert "twin_proposals" not in config_from_dict(GOOD).to_user_dict()


@pytest.mark.parametrize("changes,pattern", [
    ({"twin": "brownian"}, r"^twin: must be one of noiseless, langevin, matched, mean-field, got 'brownian'"),
    ({"twin": "langevin"}, r"^twin: langevin needs a finite beta"),
    ({"beta": 1000, "gd_rule": "normalized", "twin": "langevin"}, r"^twin: langevin needs gd_rule"),
    ({"beta": 1000, "twin_realizations": 1}, r"^twin_realizations: must be an integer >= 2"),
    ({"beta": 1000, "twin_realizations": 2.5}, r"^twin_realizations: must be an integer >= 2"),
    ({"twin_realizations": 4}, r"^twin_realizations: only used with twin = langevin, matched or mean-field"),
    ({"twin": "matched", "twin_realizations": 1}, r"^twin_realizations: must be an integer >= 2"),
    ({"twin_realisations": 4}, r"^twin_realisations: unknown key \(did you mean 'twin_realizations'\?\)"),
    ({"twin": "mean-field", "twin_proposals": 0}, r"^twin_proposals: must be an integer >= 2, got 0$"),
    ({"twin": "mean-field", "twin_proposals": 33}, r"^twin_proposals: must be even \(the mean-field twin's "
                                                    r"proposals come in antithetic pairs \+-xi\), got 33$"),
    ({"twin": "mean-field", "twin_proposals": "64"}, r"^twin_proposals: must be an integer >= 2"),
    ({"twin": "mean-field", "twin_proposals": 2 * 10**6},
     r"^twin_proposals: must be an integer in \[2, 1e\+06\]"),
    ({"twin": "mean-field", "twin_realizations": 1}, r"^twin_realizations: must be an integer >= 2, got 1$"),
    ({"twin_proposals": 64},
     r"^twin_proposals: only used with twin = mean-field, got 64 with twin = noiseless$"),
    ({"twin_proposal": 64}, r"^twin_proposal: unknown key \(did you mean 'twin_proposals'\?\)"),
])
def test_twin_bad_fields(changes, pattern):
    with pytest.raises(NegdError, match=pattern):
        config_from_dict(_with(**changes))


def test_finite_beta_preset_uses_langevin_twin():
    for scale in SCALES:
        c = preset("finite-beta", scale)
        assert c.twin == "langevin" and c.twin_realizations >= 2
    assert preset("shallow").twin == "noiseless" and preset("deep").twin == "noiseless"


@pytest.mark.parametrize("changes,needle", [
    ({"lambda": 1000, "alpha": 1e-3, "t_final": 0.2}, "t_final: 0.2 is not reached exactly"),
    ({"sigma": 1e30, "lambda": _DROP}, "3.99e+32 GD steps"),
    ({"realizations": 10**6, "t_final": 1e4, "alpha": 1e-4}, "realization-steps"),
    ({"scan": {"factors": [1000], "t_final": 0.0001}}, "scan.t_final (sigma/1000)"),
])
def test_derived_step_counts_are_validated(changes, needle):
    """Issue 11, defect 4: lambda 1000, alpha 1e-3, t_final 0.2 ran to t = 1; sigma 1e30 scheduled
    4e32 gradient steps."""
    with pytest.raises(NegdError, match=re.escape(needle)):
        config_from_dict(_with(**changes))
