import dataclasses
import os
import textwrap

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from reconlab.errors import ConfigError
from reconlab.studies.inversion.trial import METRICS, InversionTrialConfig
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
    """Every YAML in search_spaces/ binds to the installed study its name
    starts with, full and smoke, and each study's default search space is one
    of them (the studies come from the entry points, as the engine finds them)."""
    from reconlab.sweep.study import installed

    studies = installed()
    assert {"inversion", "xor", "deep_decoder", "ct", "denoise", "adversarial", "prototypes", "thesis"} <= set(studies)
    d = os.path.join(repo, "search_spaces")
    files = sorted(os.listdir(d))
    assert {"inversion.yaml", "xor.yaml", "xor_moonshot.yaml", "deep_decoder.yaml",
            "deep_decoder_compression.yaml", "deep_decoder_paper.yaml", "ct.yaml", "ct_phantoms.yaml", "denoise.yaml",
            "adversarial.yaml", "prototypes.yaml", "thesis.yaml"} <= set(files)
    for st in studies.values():
        assert os.path.samefile(os.path.dirname(st.search_space), d), st.search_space
    for f in files:
        st = studies[max((k for k in studies if f.startswith(k)), key=len)]
        for smoke in (False, True):
            s = load_spec(os.path.join(d, f), st.config, metrics=st.metrics, smoke=smoke)
            assert s.total_samples() >= 1


def test_stratifying_every_searched_parameter_is_a_grid():
    """The compression sweep stratifies over image and width and searches
    nothing else: each stratum's trials carry just its values."""
    from reconlab.sweep.searcher import StratifiedSearch

    space = {"image": {"type": "choice", "values": ["astronaut", "coffee"]},
             "k": {"type": "choice", "values": [16, 32]}}
    s = StratifiedSearch(["image", "k"], [("astronaut", 16), ("astronaut", 32), ("coffee", 16), ("coffee", 32)],
                         space, "psnr", "max", seed=0, per_stratum=1)
    cfgs = [s.suggest(f"t{i}") for i in range(4)]
    assert sorted((c["image"], c["k"]) for c in cfgs) == [("astronaut", 16), ("astronaut", 32), ("coffee", 16),
                                                           ("coffee", 32)]
    s.on_trial_complete("t0", {"psnr": 20.0})
    assert s.suggest("t4") == "FINISHED"


def test_paired_strata_draw_the_same_settings_and_unpaired_ones_do_not(tmp_path):
    """``paired: true``: every arm's study has the same seed, so its random
    start-up trials try the same learning rates (arms compared at the same
    settings); without it each arm draws its own. ``paired`` needs strata."""
    from reconlab.studies.denoise.trial import METRICS as DENOISE_METRICS
    from reconlab.studies.denoise.trial import DenoiseTrialConfig
    from reconlab.sweep.searcher import make_searcher

    text = """
        name: d
        metric: objective
        num_samples: 2
        stratify: arm
        {paired}
        resources_per_trial: {{cpu: 0, gpu: 0}}
        search:
          arm: {{type: choice, values: [impulse_n2n/l0/noisy, impulse_n2n/l2/noisy]}}
          lr: {{type: loguniform, low: 0.0003, high: 0.003}}
        """
    lrs = {}
    for paired in ("paired: true", ""):
        s = load_spec(write(tmp_path, text.format(paired=paired)), DenoiseTrialConfig, metrics=DENOISE_METRICS)
        searcher = make_searcher(s)
        cfgs = [searcher.suggest(f"t{i}") for i in range(4)]
        lrs[paired] = {arm: [c["lr"] for c in cfgs if c["arm"] == arm] for arm in s.strata()}
    l0, l2 = lrs["paired: true"].values()
    assert l0 == l2 and len(set(l0)) == 2
    l0, l2 = lrs[""].values()
    assert set(l0).isdisjoint(l2)
    with pytest.raises(ConfigError, match="key 'paired' = True"):
        load_spec(write(tmp_path, """
            name: d
            metric: objective
            paired: true
            search: {lr: {type: loguniform, low: 0.0003, high: 0.003}}
            """), DenoiseTrialConfig, metrics=DENOISE_METRICS)


def test_stratify_over_several_choices_gives_each_combination_its_own_study(tmp_path):
    """Table I needs one study per (mode, noise): the product of the choices,
    each suggested num_samples times, with both keys set."""
    from reconlab.sweep.searcher import make_searcher
    from reconlab.studies.xor.trial import METRICS as XOR_METRICS
    from reconlab.studies.xor.trial import XorTrialConfig

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
    ("custom CPU", GOOD + "resources_per_trial: {custom: {CPU: 1}}\n", "key 'resources_per_trial.custom.CPU' = 1.0"),
    ("custom not a mapping", GOOD + "resources_per_trial: {custom: [a]}\n",
     "key 'resources_per_trial.custom' = ['a']: expected a mapping"),
    ("custom amount a string", GOOD + "resources_per_trial: {custom: {gpu_slot: one}}\n",
     "key 'resources_per_trial.custom.gpu_slot' = 'one': expected a number"),
]


@pytest.mark.parametrize("case,text,message", BAD, ids=[b[0] for b in BAD])
def test_bad_spec_names_file_key_and_value(tmp_path, case, text, message):
    p = write(tmp_path, text)
    with pytest.raises(ConfigError) as e:
        load(p)
    line = str(e.value)
    assert "\n" not in line and line.startswith(p) and message in line


def test_custom_resources_bind_and_reach_the_trial_s_bundle(tmp_path):
    from ray.tune.execution.placement_groups import resource_dict_to_pg_factory

    from reconlab.sweep.runner import trial_resources

    spec = load(write(tmp_path, GOOD + "resources_per_trial: {cpu: 1, custom: {gpu_slot: 1, accelerator_type:A10G: 0.001}}\n"))
    assert spec.resources_per_trial.custom == {"gpu_slot": 1.0, "accelerator_type:A10G": 0.001}
    (bundle,) = resource_dict_to_pg_factory(trial_resources(spec.resources_per_trial)).bundles  # what Tune reserves
    assert bundle == {"CPU": 1.0, "gpu_slot": 1.0, "accelerator_type:A10G": 0.001}
    plain = load(write(tmp_path, GOOD)).resources_per_trial
    assert plain.custom == {} and trial_resources(plain) == {"cpu": 1.0, "gpu": 0.0}


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


# Fuzz the raw text, not only documents PyYAML can dump: any bytes, any
# unicode, YAML syntax soup (anchors, aliases, tags, merge keys, tabs,
# directives, flow and block collections), edits of a good file and very deep
# nesting. Every outcome is a SweepSpec or a one-line ConfigError that starts
# with the file's path; any other exception (RecursionError, ValueError from a
# constructor, ...) fails the test.
from reconlab.sweep.spec import SweepSpec  # noqa: E402

TOKENS = ["name", "metric", "fixed", "search", "smoke", "scheduler", "lr", "variant", "values", "type", "low", "high",
          "verifier_acc", "choice", "uniform", ":", ": ", " ", "  ", "\t", "\n", "\r\n", "-", "- ", ",", "[", "]", "{",
          "}", "?", "? ", "&a ", "*a", "*b", "<<: *a", "<<: ", "!!binary ", "!!set ", "!!omap ", "!!timestamp ",
          "!!int ", "!!float ", "!!str ", "!!python/object/apply:os.system ", "!local ", "'", '"', "|", ">", "#",
          "%YAML 1.1\n", "%TAG ! tag:x,2000:\n", "---\n", "...\n", "~", "null", "true", "yes", ".inf", "-.inf", ".nan",
          "0x1f", "0o17", "1_000", "1e400", "10" * 30, "-1", "0", "2001-13-45", "2001-12-14 25:00:00", "\\u2028",
          "\u2028", "\x85", "\ufeff", "\x00", "\x1c", "é", "💥"]


def _load_cleanly(p):
    for smoke in (False, True):
        try:
            s = load(str(p), smoke=smoke)
        except ConfigError as e:
            msg = str(e)
            assert len(msg.splitlines()) == 1 and "\n" not in msg, msg
            assert msg.startswith(str(p)), msg
            assert len(msg) < 2000, msg[:300]
            continue
        assert isinstance(s, SweepSpec)


FUZZ = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                          HealthCheck.too_slow])


@FUZZ
@given(blob=st.one_of(st.binary(max_size=300),
                      st.text(st.characters(blacklist_categories=("Cs",)), max_size=300).map(str.encode)))
def test_fuzzed_raw_bytes_and_unicode_load_or_fail_cleanly(tmp_path, blob):
    p = tmp_path / "fuzz.yaml"
    p.write_bytes(blob)
    _load_cleanly(p)


@FUZZ
@given(parts=st.lists(st.sampled_from(TOKENS), max_size=60))
def test_fuzzed_yaml_syntax_soup_loads_or_fails_cleanly(tmp_path, parts):
    p = tmp_path / "fuzz.yaml"
    p.write_bytes("".join(parts).encode("utf-8", "surrogatepass"))
    _load_cleanly(p)


@FUZZ
@given(edits=st.lists(st.tuples(st.integers(0, len(GOOD)), st.integers(0, 5), st.sampled_from(TOKENS)), max_size=4))
def test_fuzzed_edits_of_a_good_file_load_or_fail_cleanly(tmp_path, edits):
    """Insert tokens into (or cut characters out of) a valid file."""
    text = GOOD
    for pos, cut, tok in edits:
        pos = min(pos, len(text))
        text = text[:pos] + tok + text[pos + cut:]
    p = tmp_path / "fuzz.yaml"
    p.write_text(text, encoding="utf-8")
    _load_cleanly(p)


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(shape=st.sampled_from(["flow_seq", "flow_map", "block_seq", "block_map", "in_good"]),
       depth=st.integers(1, 1500))
def test_deeply_nested_yaml_loads_or_fails_cleanly(tmp_path, shape, depth):
    if shape.startswith("block"):  # indentation grows the text quadratically; 600 levels is past the limit
        depth = min(depth, 600)
    if shape == "flow_seq":
        text = "[" * depth + "]" * depth
    elif shape == "flow_map":
        text = "a: " + "{b: " * depth + "1" + "}" * depth
    elif shape == "block_seq":
        text = "".join("  " * i + "-\n" for i in range(depth)) + "  " * depth + "x\n"
    elif shape == "block_map":
        text = "".join("  " * i + "k:\n" for i in range(depth)) + "  " * depth + "x\n"
    else:  # deep, but inside a key that is otherwise allowed
        text = GOOD + "fixed: {restarts: " + "[" * depth + "]" * depth + "}\n"
        text = text.replace("fixed: {restarts: 2}\n", "", 1)
    p = tmp_path / "fuzz.yaml"
    p.write_text(text)
    _load_cleanly(p)


def test_alias_bomb_fails_fast_with_a_short_line(tmp_path):
    """A "billion laughs" document: aliases are shared, so loading is cheap,
    and the error line stays short however large the value would print."""
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 9) + "]" for i in range(1, 10)]
    p = tmp_path / "bomb.yaml"
    p.write_text(GOOD.replace("fixed: {restarts: 2}", "fixed: {restarts: *a9}") .replace("name: t", "\n".join(lines) + "\nname: t"))
    with pytest.raises(ConfigError) as e:
        load(str(p))
    assert len(str(e.value)) < 600 and "key 'a0'" in str(e.value)


@pytest.mark.parametrize("text,message", [
    ("name: t\nname: u\nmetric: verifier_acc\n", "malformed YAML at line 2, column 1: found duplicate key 'name'"),
    ("name: 2001-13-45\n", "malformed YAML: ValueError: month must be in 1..12"),
    ("name: !!timestamp x\n", "malformed YAML: AttributeError"),
    ("name: !!python/object/apply:os.system [true]\n", "could not determine a constructor"),
    ("name: t\nmetric: verifier_acc\nsource: /etc/passwd\n", "key 'source' = '/etc/passwd': unknown key"),
    ("name: t\nmetric: verifier_acc\nfixed: {lr: " + "9" * 400 + "}\n", "key 'fixed.lr' = 999"),
    ("name: t\nmetric: verifier_acc\nseed: 4294967296\n", "key 'seed' = 4294967296: must be in [0, 2147483647]"),
    ("name: t/../../x\nmetric: verifier_acc\n", "key 'name' = 't/../../x': must be 1-64 letters"),
    ("name: t\nmetric: verifier_acc\nresources_per_trial: {gpu: .inf}\n", "need finite cpu >= 0 and gpu >= 0"),
    ("name: t\nmetric: verifier_acc\ndataset: imagenet\n", "key 'dataset' = 'imagenet': unknown dataset"),
    ("name: t\nmetric: verifier_acc\nfixed: {lr: -1.0, restarts: 2}\n", "key 'fixed.lr' = -1.0: lr must be a positive"),
    ("", "empty file"),
    ("\xff\xfe", "not UTF-8 text"),
])
def test_raw_text_edge_cases(tmp_path, text, message):
    p = tmp_path / "space.yaml"
    p.write_bytes(text.encode("latin-1") if text == "\xff\xfe" else text.encode())
    with pytest.raises(ConfigError) as e:
        load(str(p))
    line = str(e.value)
    assert "\n" not in line and line.startswith(str(p)) and message in line, line


def test_merge_keys_still_override_as_yaml_defines(tmp_path):
    p = write(tmp_path, GOOD.replace("fixed: {restarts: 2}", "fixed: {<<: {restarts: 3, lr: 0.5}, restarts: 2}")
              .replace("  lr: {type: loguniform, low: 0.01, high: 0.1}\n", ""))
    assert load(p).fixed == {"restarts": 2, "lr": 0.5}


def test_stop_points_are_ashas_rungs():
    """The reports where ASHA may stop a trial (so the trial checkpoints there):
    Ray's rungs grace * rf^k below max_t; none for FIFO."""
    from reconlab.sweep.runner import stop_points
    from reconlab.sweep.spec import SchedulerSpec, SweepSpec

    spec = SweepSpec(name="s", metric="m", scheduler=SchedulerSpec(type="asha", grace_period=2, reduction_factor=3))
    assert stop_points(spec, 20) == [2, 6, 18]
    assert stop_points(spec, 18) == [2, 6]
    assert stop_points(dataclasses.replace(spec, scheduler=SchedulerSpec(type="fifo")), 20) == []


def test_best_result_breaks_ties_by_trial_id_whatever_the_order():
    """A resumed sweep lists its trials in another order; the best (and the
    best.* params logged on the parent, which MLflow will not change) must not
    depend on it. Ties go to the lowest trial id; mode min flips the sign."""
    import itertools
    from types import SimpleNamespace

    from reconlab.sweep.runner import best_result

    rs = [SimpleNamespace(metrics={"acc": a, "trial_id": t}) for a, t in
          [(0.5, "t_00003"), (0.9, "t_00002"), (0.9, "t_00001"), (0.1, "t_00000"), (0.9, "t_00004")]]
    for perm in itertools.permutations(rs):
        assert best_result(perm, "acc", "max").metrics["trial_id"] == "t_00001"
        assert best_result(perm, "acc", "min").metrics["trial_id"] == "t_00000"


def test_durable_study_skips_intermediate_values_without_changing_tpe(tmp_path):
    """The SQLite study (WAL mode) stores no intermediate value, one
    transaction per report saved, and TPE still suggests exactly what Ray's
    in-memory OptunaSearch does when it is fed every intermediate value."""
    import sqlite3

    from ray.tune.search.optuna import OptunaSearch

    from reconlab.sweep.searcher import optuna_distribution, optuna_search

    space = {"lr": {"type": "loguniform", "low": 1e-3, "high": 1.0}, "w": {"type": "uniform", "low": 0.0, "high": 1.0}}
    db = tmp_path / "optuna.db"
    ours = optuna_search(space, "acc", "max", seed=3, storage=str(db), study_name="sweep")
    ref = OptunaSearch(space={k: optuna_distribution(v) for k, v in space.items()}, metric="acc", mode="max",
                       sampler=type(ours._sampler)(seed=3, n_startup_trials=ours._sampler._n_startup_trials))
    for i in range(8):  # past TPE's start-up trials
        a, b = ours.suggest(f"t{i}"), ref.suggest(f"t{i}")
        assert a == b
        for step in (1, 2, 3):
            value = step * a["w"] / 3 - 0.1 * abs(a["lr"] - 0.05)
            ours.on_trial_result(f"t{i}", {"acc": value, "training_iteration": step})
            ref.on_trial_result(f"t{i}", {"acc": value, "training_iteration": step})
        ours.on_trial_complete(f"t{i}", {"acc": value, "training_iteration": 3})
        ref.on_trial_complete(f"t{i}", {"acc": value, "training_iteration": 3})
    assert ours.suggest("t8") == ref.suggest("t8")
    assert all(len(t.intermediate_values) == 3 for t in ref._ot_study.trials[:8])  # what Ray stores
    trials = ours._ot_study.get_trials()
    assert [t.state.name for t in trials[:8]] == ["COMPLETE"] * 8 and all(not t.intermediate_values for t in trials)
    with sqlite3.connect(db) as con:
        assert con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
