"""Configuration files read with bounded work (issue 11, defect 7), and property-based fuzzing:
whatever a configuration holds, the answer is a run configuration or one short NegdError line."""

from __future__ import annotations

import math
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from negd.experiments.config.file import MAX_MESSAGE, MAX_VALUES, expanded_size
from negd.experiments.config.schema import TOP_KEYS, config_from_dict, load_config
from negd.validation import NegdError

# 455 bytes: nine levels of nine aliases, 9^9 = 387 million values once expanded.
ALIAS_BOMB = """
a: &a [1, 1, 1, 1, 1, 1, 1, 1, 1]
b: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]
c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b]
d: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c]
e: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d]
f: &f [*e, *e, *e, *e, *e, *e, *e, *e, *e]
g: &g [*f, *f, *f, *f, *f, *f, *f, *f, *f]
h: &h [*g, *g, *g, *g, *g, *g, *g, *g, *g]
scan: {factors: [*h, *h, *h, *h, *h, *h, *h, *h, *h]}
"""


def _error(path) -> str:
    with pytest.raises(NegdError) as info:
        load_config(path)
    text = str(info.value)
    assert "\n" not in text and len(text) <= MAX_MESSAGE + 20
    return text


def test_yaml_alias_bomb_refused_quickly(tmp_path):
    """Defect 7: a 455-byte alias bomb in scan.factors cost 42 s and 2 GB, then a MemoryError."""
    path = tmp_path / "bomb.yaml"
    path.write_text(ALIAS_BOMB)
    start = time.perf_counter()
    assert "aliases are expanded" in _error(path)
    assert time.perf_counter() - start < 5  # generous: milliseconds on any machine


def test_alias_reuse_within_limits_is_fine(tmp_path):
    path = tmp_path / "ok.yaml"
    path.write_text("network: {depth: 1, width: &w 4}\ntrajectories: *w\nrealizations: *w\n")
    assert load_config(path).network.width == 4
    shared = [1] * 100
    assert expanded_size({"a": [shared] * 10}) == 1 + 1 + 1 + 10 * 101
    assert expanded_size({"a": [shared] * 1000}) > MAX_VALUES


@pytest.mark.parametrize("suffix", [".yaml", ".toml"])
@pytest.mark.parametrize("content,needle", [
    (b"", "is empty"), (b"   \n# only a comment\n", "is empty"),
    (bytes(range(256)) * 8, "not UTF-8"), (b"seed = 1\x00\x00", "binary"),
])
def test_unreadable_or_empty_files_refused(tmp_path, suffix, content, needle):
    """Defect 7: 2 KB of random bytes gave a UnicodeDecodeError traceback; an empty .toml silently
    ran the defaults (an empty .yaml was refused)."""
    path = tmp_path / f"c{suffix}"
    path.write_bytes(content)
    assert needle in _error(path)


def test_huge_value_is_not_quoted_in_full(tmp_path):
    path = tmp_path / "big.yaml"
    path.write_text("task: " + "x" * 100_000 + "\n")
    assert "...(truncated)" in _error(path)


# ---------------------------------------------------------------------------- fuzzing
_scalars = st.one_of(st.none(), st.booleans(), st.integers(-10**30, 10**30), st.floats(allow_nan=True),
                     st.text(max_size=30), st.sampled_from(["inf", "-inf", "nan", "1e-4", "1e400", ""]))
_values = st.recursive(
    _scalars, lambda inner: st.one_of(st.lists(inner, max_size=5),
                                      st.dictionaries(st.text(max_size=8), inner, max_size=4)), max_leaves=12)
_plausible = [st.integers(-2, 20), st.floats(1e-6, 10), st.sampled_from([0.1, 0.5, 1, 2, 3, 1000, 1e-30]),
              st.floats(1e-35, 1e35), st.integers(-1, 2**64)]
_keys = st.sampled_from([*TOP_KEYS, "bogus"])


@settings(max_examples=150, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(st.dictionaries(_keys, st.one_of(_values, *_plausible), max_size=6))
def test_fuzzed_configs_give_a_config_or_one_line(data):
    try:
        config = config_from_dict(data)
    except NegdError as e:
        text = str(e)
        assert text and "\n" not in text and len(text) < 2000
        return
    arms = config.arms()
    for arm in arms:  # accepted: t_final reached exactly and the work bounded
        assert math.isclose(arm.t_final, arm.gd_steps * config.alpha)
        assert math.isclose(arm.t_final, config.t_final if arm is arms[0] else arm.t_final)
        assert arm.ne_steps <= 10**10 and arm.gd_steps <= 10**10


@settings(max_examples=60, deadline=None, derandomize=True)
@given(st.binary(max_size=300), st.sampled_from([".yaml", ".toml"]))
def test_fuzzed_file_bytes_give_one_line(tmp_path_factory, content, suffix):
    path = tmp_path_factory.mktemp("fz") / f"c{suffix}"
    path.write_bytes(content)
    try:
        load_config(path)
    except NegdError as e:
        assert "\n" not in str(e) and len(str(e)) <= MAX_MESSAGE + 20


def test_unknown_keys_that_are_not_plain_names_stay_on_one_line():
    """Found by the fuzzing above: a key with a newline made a two-line error."""
    for data in ({"network": {"\n": None}}, {"\x00bad": 1}, {"x" * 500: 1}):
        with pytest.raises(NegdError) as err:
            config_from_dict(data)
        assert "\n" not in str(err.value) and len(str(err.value)) < 600
