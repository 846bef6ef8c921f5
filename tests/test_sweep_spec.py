import os
import textwrap

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from reconlab.errors import ConfigError
from reconlab.sweep.inversion_trial import METRICS, InversionTrialConfig
from reconlab.sweep.spec import load_spec

GOOD = """
name: t
metric: verifier_acc
num_samples: 3
stratify: variant
fixed: {restarts: 2}
search:
  variant: {type: choice, values: [sgd, adam]}
  lr: {type: loguniform, low: 0.01, high: 0.1}
  steps: {type: int, low: 20, high: 40, step: 10}
smoke: {num_samples: 1, fixed: {report_every: 5}}
"""


def write(tmp_path, text, name="space.yaml"):
    p = tmp_path / name
    p.write_text(textwrap.dedent(text))
    return str(p)


def load(path, **kw):
    return load_spec(path, InversionTrialConfig, metrics=METRICS, **kw)


def test_good_spec_binds_and_smoke_overrides(tmp_path):
    p = write(tmp_path, GOOD)
    s = load(p)
    assert s.num_samples == 3 and s.total_samples() == 6 and s.strata() == ["sgd", "adam"]
    assert s.search["steps"] == {"type": "int", "low": 20, "high": 40, "step": 10}
    smoke = load(p, smoke=True)
    assert smoke.num_samples == 1 and smoke.fixed == {"restarts": 2, "report_every": 5}


def test_shipped_search_spaces_validate(repo):
    from reconlab.sweep.xor_trial import METRICS as XOR_METRICS
    from reconlab.sweep.xor_trial import XorTrialConfig

    d = os.path.join(repo, "search_spaces")
    files = sorted(os.listdir(d))
    assert {"inversion.yaml", "xor.yaml", "xor_moonshot.yaml"} <= set(files)
    for f in files:
        for smoke in (False, True):
            if f.startswith("inversion"):
                s = load(os.path.join(d, f), smoke=smoke)
            else:
                s = load_spec(os.path.join(d, f), XorTrialConfig, metrics=XOR_METRICS, smoke=smoke)
            assert s.total_samples() >= 1


def test_stratify_over_several_choices_gives_each_combination_its_own_study(tmp_path):
    """Table I needs one study per (mode, noise): the product of the choices,
    each suggested num_samples times, with both keys set."""
    from reconlab.sweep.searcher import make_searcher
    from reconlab.sweep.xor_trial import METRICS as XOR_METRICS
    from reconlab.sweep.xor_trial import XorTrialConfig

    p = write(tmp_path, """
        name: x
        metric: test_psnr
        num_samples: 2
        stratify: [mode, noise]
        resources_per_trial: {cpu: 0, gpu: 0}
        search:
          mode: {type: choice, values: [ctr, cbc]}
          noise: {type: choice, values: [0.0, 0.01]}
          lr: {type: loguniform, low: 0.001, high: 0.01}
        """)
    s = load_spec(p, XorTrialConfig, metrics=XOR_METRICS)
    assert s.strata() == [("ctr", 0.0), ("ctr", 0.01), ("cbc", 0.0), ("cbc", 0.01)] and s.total_samples() == 8
    searcher = make_searcher(s)
    cfgs = [searcher.suggest(f"t{i}") for i in range(8)]
    assert sorted((c["mode"], c["noise"]) for c in cfgs) == sorted(s.strata() * 2)
    assert all(0.001 <= c["lr"] <= 0.01 for c in cfgs) and searcher.suggest("t8") == "FINISHED"
    bad = p.replace("space", "bad")
    with open(bad, "w") as f:
        f.write(open(p).read().replace("stratify: [mode, noise]", "stratify: [mode, lr]"))
    with pytest.raises(ConfigError, match="key 'stratify' = \\['mode', 'lr'\\]"):
        load_spec(bad, XorTrialConfig, metrics=XOR_METRICS)


BAD = [
    ("unknown top key", GOOD + "colour: red\n", "key 'colour' = 'red': unknown key"),
    ("unknown trial key", GOOD.replace("restarts: 2", "restartz: 2"), "key 'fixed.restartz' = 2: unknown trial parameter"),
    ("wrong type", GOOD.replace("num_samples: 3", "num_samples: three"), "key 'num_samples' = 'three': expected an integer"),
    ("inverted range", GOOD.replace("low: 0.01, high: 0.1", "low: 0.1, high: 0.01"), "key 'search.lr' = [0.1, 0.01]: empty or inverted range"),
    ("empty range", GOOD.replace("low: 0.01, high: 0.1", "low: 0.1, high: 0.1"), "empty or inverted range"),
    ("log of zero", GOOD.replace("low: 0.01, high: 0.1", "low: 0.0, high: 0.1"), "lr must be a positive"),
    ("unknown variant", GOOD.replace("[sgd, adam]", "[sgd, lbfgs]"), "key 'search.variant.values[1]' = 'lbfgs': unknown classifier variant"),
    ("empty choice", GOOD.replace("[sgd, adam]", "[]"), "empty choice"),
    ("bad param type", GOOD.replace("type: loguniform", "type: gaussian"), "key 'search.lr.type' = 'gaussian'"),
    ("negative weight", GOOD.replace("search:\n", "search:\n  tv_weight: {type: uniform, low: -1.0, high: 1.0}\n"), "key 'search.tv_weight.low' = -1.0: tv_weight must be"),
    ("float steps", GOOD.replace("low: 20, high: 40", "low: 20.5, high: 40"), "key 'search.steps.low' = 20.5: expected an integer"),
    ("bad step", GOOD.replace("step: 10", "step: 7"), "step must be >= 1 and divide"),
    ("unknown metric", GOOD.replace("metric: verifier_acc", "metric: accuracy"), "key 'metric' = 'accuracy': unknown metric"),
    ("stratify non-choice", GOOD.replace("stratify: variant", "stratify: lr"), "key 'stratify' = 'lr'"),
    ("fixed and searched", GOOD.replace("restarts: 2", "lr: 0.1"), "key 'search.lr'"),
    ("bad mode", GOOD + "mode: maximum\n", "key 'mode' = 'maximum'"),
    ("not a mapping", "- a\n- b\n", "top level must be a mapping"),
    ("malformed", "name: [unclosed\n", "malformed YAML at line"),
    ("bad smoke key", GOOD.replace("smoke: {num_samples: 1", "smoke: {samples: 1"), "key 'smoke.samples'"),
    ("negative resources", GOOD + "resources_per_trial: {cpu: -1}\n", "key 'resources_per_trial'"),
]


@pytest.mark.parametrize("case,text,message", BAD, ids=[b[0] for b in BAD])
def test_bad_spec_names_file_key_and_value(tmp_path, case, text, message):
    p = write(tmp_path, text)
    with pytest.raises(ConfigError) as e:
        load(p)
    line = str(e.value)
    assert "\n" not in line and line.startswith(p) and message in line


def test_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="file not found"):
        load(str(tmp_path / "nope.yaml"))


# Fuzz: any YAML document either binds or fails with a ConfigError (never a
# crash, never a silent fix-up of an unknown key).
leaf = st.one_of(st.none(), st.booleans(), st.integers(-5, 500), st.floats(allow_nan=True), st.text(max_size=8))
value = st.recursive(leaf, lambda c: st.one_of(st.lists(c, max_size=3), st.dictionaries(st.text(max_size=8), c, max_size=3)), max_leaves=8)
keys = st.sampled_from(["name", "metric", "mode", "num_samples", "stratify", "seed", "fixed", "search", "scheduler",
                        "smoke", "train", "resources_per_trial", "extra"])


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(base=st.just(yaml.safe_load(GOOD)), edits=st.dictionaries(keys, value, max_size=3))
def test_fuzzed_specs_bind_or_fail_cleanly(tmp_path, base, edits):
    doc = {**base, **edits}
    p = tmp_path / "fuzz.yaml"
    p.write_text(yaml.safe_dump(doc))
    try:
        s = load(str(p))
    except ConfigError as e:
        assert "\n" not in str(e) and str(p) in str(e)
        return
    assert set(edits) <= {"name", "metric", "mode", "num_samples", "stratify", "seed", "fixed", "search",
                          "scheduler", "smoke", "train", "resources_per_trial"}
    for k, v in s.fixed.items():
        InversionTrialConfig(**{k: v})
