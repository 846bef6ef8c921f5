"""Search-space files (``search_spaces/*.yaml``) bound onto dataclasses.

    name: inversion              # -> MLflow tag reconlab.sweep
    metric: verifier_acc
    mode: max
    num_samples: 12              # trials (per stratum when ``stratify`` is set)
    stratify: variant            # one seeded TPE study per value of this choice
                                 # (a list of choices: one per combination)
    paired: false                # true: every stratum's study has the same seed, so
                                 # their random start-up draws are the same settings
    seed: 0
    scheduler: {grace_period: 2, reduction_factor: 3}
    resources_per_trial: {cpu: 1, gpu: 0}
    train: {epochs: 12, num_workers: 1}
    fixed: {restarts: 4}         # trial-config values held constant
    search:                      # trial-config values searched
      lr: {type: loguniform, low: 0.005, high: 0.3}
      steps: {type: int, low: 100, high: 300, step: 50}
      optimizer: {type: choice, values: [adam, sgd]}
    smoke: {num_samples: 1, fixed: {steps: 40}, train: {epochs: 3}}

Every key is checked: unknown keys, wrong types, empty or inverted ranges and
values the trial config rejects are a ConfigError naming file, key and value.
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
import math
import re
import typing
from typing import Any, Literal

from reconlab.config import bind, check_value
from reconlab.errors import ConfigError


@dataclasses.dataclass(frozen=True)
class ParamSpec:
    type: Literal["uniform", "loguniform", "int", "logint", "choice"]
    low: int | float | None = None
    high: int | float | None = None
    step: int | None = None
    values: list | None = None


@dataclasses.dataclass(frozen=True)
class SchedulerSpec:
    type: Literal["asha", "fifo"] = "asha"
    grace_period: int = 2
    reduction_factor: int = 3


RAY_BUILTIN_RESOURCES = {"CPU", "GPU", "memory", "object_store_memory", "cpu", "gpu"}


@dataclasses.dataclass(frozen=True)
class Resources:
    """Per trial. cpu = gpu = 0: the trial only coordinates (e.g. it launches a
    TorchTrainer whose workers hold the CPUs/GPUs)."""

    cpu: float = 1.0
    gpu: float = 0.0
    # other Ray resources each trial asks for, e.g. {gpu_worker: 1} to land on a
    # node type that declares it (an autoscaler then launches such nodes)
    custom: dict[str, float] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True)
class TrainOptions:
    epochs: int | None = None  # None: each variant's own default
    num_workers: int = 1


@dataclasses.dataclass(frozen=True)
class SmokeOverrides:
    num_samples: int | None = None
    fixed: dict = dataclasses.field(default_factory=dict)
    search: dict = dataclasses.field(default_factory=dict)
    train: dict = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True)
class SweepSpec:
    name: str
    metric: str
    mode: Literal["max", "min"] = "max"
    num_samples: int = 8
    stratify: str | list[str] | None = None
    # the strata's studies share one seed: their random start-up draws are the
    # same configurations, so strata (arms) are compared at the same settings
    paired: bool = False
    seed: int = 0
    dataset: str = "digits"
    scheduler: SchedulerSpec = SchedulerSpec()
    resources_per_trial: Resources = Resources()
    train: TrainOptions = TrainOptions()
    fixed: dict = dataclasses.field(default_factory=dict)
    search: dict = dataclasses.field(default_factory=dict)
    smoke: SmokeOverrides = SmokeOverrides()
    source: str = "<spec>"
    # trials per stratum where the trial config fixes it (``samples_per_stratum``:
    # e.g. a method without parameters needs one); None: num_samples
    budgets: tuple[int | None, ...] | None = None

    def strata_keys(self) -> list[str]:
        return [] if self.stratify is None else [self.stratify] if isinstance(self.stratify, str) else list(
            self.stratify)

    def strata(self) -> list | None:
        """The stratum values: plain values for one key, tuples for several."""
        keys = self.strata_keys()
        if not keys:
            return None
        if isinstance(self.stratify, str):
            return list(self.search[keys[0]]["values"])
        return list(itertools.product(*(self.search[k]["values"] for k in keys)))

    def stratum_budgets(self) -> list[int] | None:
        """Trials per stratum, in ``strata()`` order (None: no strata)."""
        s = self.strata()
        if not s:
            return None
        return [self.num_samples if b is None else b for b in (self.budgets or [None] * len(s))]

    def total_samples(self) -> int:
        b = self.stratum_budgets()
        return sum(b) if b else self.num_samples


@functools.lru_cache(maxsize=1)
def _strict_loader():
    """``yaml.SafeLoader`` that rejects a key given twice in one mapping (PyYAML
    silently keeps the last one: a typo'd copy would override the real value).
    Merge keys (``<<: *base``) still override as YAML defines."""
    import yaml

    class StrictLoader(yaml.SafeLoader):
        def construct_mapping(self, node, deep=False):
            if isinstance(node, yaml.MappingNode):
                seen = set()
                for key_node, _ in node.value:
                    if not isinstance(key_node, yaml.ScalarNode) or key_node.tag == "tag:yaml.org,2002:merge":
                        continue
                    key = self.construct_object(key_node)
                    if key in seen:
                        raise yaml.constructor.ConstructorError(
                            "while constructing a mapping", node.start_mark, f"found duplicate key {key!r}",
                            key_node.start_mark)
                    seen.add(key)
            return super().construct_mapping(node, deep=deep)

    return StrictLoader


def read_yaml(path: str) -> Any:
    """The parsed document; any failure is a one-line ConfigError naming the file."""
    import yaml

    try:
        f = open(path, encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError("file not found", source=path) from None
    except IsADirectoryError:
        raise ConfigError("is a directory, not a YAML file", source=path) from None
    except PermissionError:
        raise ConfigError("permission denied", source=path) from None
    except (OSError, ValueError) as e:  # e.g. a path with a NUL byte
        raise ConfigError(f"cannot open ({type(e).__name__}: {e})", source=path) from None
    with f:
        try:
            return yaml.load(f, Loader=_strict_loader())  # noqa: S506 (a SafeLoader subclass)
        except UnicodeDecodeError as e:
            raise ConfigError(f"not UTF-8 text ({e.reason})", source=path) from None
        except yaml.YAMLError as e:
            mark = getattr(e, "problem_mark", None)
            where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
            problem = getattr(e, "problem", None) or str(e)
            raise ConfigError(f"malformed YAML{where}: {problem}", source=path) from None
        except RecursionError:
            raise ConfigError("malformed YAML: nested too deeply", source=path) from None
        except Exception as e:  # PyYAML's constructors raise plain errors too: `2001-13-45`, `!!int abc`
            raise ConfigError(f"malformed YAML: {type(e).__name__}: {e}", source=path) from None


def _field_types(cls) -> dict[str, Any]:
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls) if f.init}


def _check_trial_values(cls, values: dict, *, source: str, key: str, base: dict | None = None) -> None:
    """Every value must be accepted by the trial config (its __post_init__),
    together with the ``base`` (fixed) values."""
    for name, v in values.items():
        try:
            cls(**{**(base or {}), name: v})
        except (TypeError, ValueError, ArithmeticError) as e:
            raise ConfigError(str(e), source=source, key=key, value=v) from None


def _check_fixed(cls, fixed: dict, *, source: str) -> None:
    """The fixed values together must make a trial config; the error names the
    one key that is wrong on its own, else the whole ``fixed`` mapping."""
    bad = (TypeError, ValueError, ArithmeticError)
    try:
        cls(**fixed)
        return
    except bad as e:
        err = e
    for name, v in fixed.items():
        try:
            cls(**{name: v})
        except bad as e:
            raise ConfigError(str(e), source=source, key=f"fixed.{name}", value=v) from None
    raise ConfigError(str(err), source=source, key="fixed", value=fixed) from None


def validate_param(name: str, p: ParamSpec, tp, cls, *, source: str, fixed: dict | None = None) -> dict:
    key = f"search.{name}"
    if p.type == "choice":
        if p.low is not None or p.high is not None or p.step is not None:
            raise ConfigError("a choice takes 'values' only", source=source, key=key, value=dataclasses.asdict(p))
        if not p.values:
            raise ConfigError("empty choice", source=source, key=f"{key}.values", value=p.values)
        if len(set(map(repr, p.values))) != len(p.values):
            raise ConfigError("duplicate choice values", source=source, key=f"{key}.values", value=p.values)
        for i, v in enumerate(p.values):
            check_value(tp, v, source=source, key=f"{key}.values[{i}]")
            _check_trial_values(cls, {name: v}, source=source, key=f"{key}.values[{i}]", base=fixed)
        return {"type": "choice", "values": list(p.values)}
    if p.values is not None:
        raise ConfigError(f"a {p.type} range takes low/high, not values", source=source, key=f"{key}.values",
                          value=p.values)
    if p.low is None or p.high is None:
        raise ConfigError("a range needs both low and high", source=source, key=key, value=dataclasses.asdict(p))
    is_int = p.type in ("int", "logint")
    for end in ("low", "high"):
        v = getattr(p, end)
        check_value(int if is_int else float, v, source=source, key=f"{key}.{end}")
        check_value(tp, int(v) if is_int else float(v), source=source, key=f"{key}.{end}")
        _check_trial_values(cls, {name: v}, source=source, key=f"{key}.{end}", base=fixed)
    if not p.low < p.high:
        raise ConfigError("empty or inverted range (need low < high)", source=source, key=key,
                          value=[p.low, p.high])
    if p.type in ("loguniform", "logint") and p.low <= 0:
        raise ConfigError("a log range needs low > 0", source=source, key=f"{key}.low", value=p.low)
    if p.step is not None:
        if not is_int:
            raise ConfigError("step applies to int ranges", source=source, key=f"{key}.step", value=p.step)
        if p.step < 1 or (p.high - p.low) % p.step:
            raise ConfigError("step must be >= 1 and divide high - low", source=source, key=f"{key}.step",
                              value=p.step)
    out = {"type": p.type, "low": p.low, "high": p.high}
    if p.step is not None:
        out["step"] = p.step
    return out


def _merge(base: dict, over: dict) -> dict:
    out = dict(base)
    for k, v in over.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def load_spec(path: str, trial_cls, *, smoke: bool = False, metrics: tuple[str, ...] = ()) -> SweepSpec:
    """Read, bind and validate a search-space file against ``trial_cls``."""
    raw = read_yaml(path)
    if raw is None:
        raise ConfigError("empty file", source=path)
    if not isinstance(raw, dict):
        raise ConfigError("top level must be a mapping", source=path, key="<root>", value=raw)
    try:
        spec = _validate(raw, path, trial_cls, smoke=smoke, metrics=metrics)
        if not smoke:  # a broken smoke section is an error in every run, not a surprise later
            _validate(raw, path, trial_cls, smoke=True, metrics=metrics)
    except RecursionError:
        raise ConfigError("nested too deeply", source=path) from None
    return spec


# Sweep names become directory names (``<storage>/tune/<name>-<id>``) and tags.
NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
SEED_MAX = 2**31 - 1  # Optuna/NumPy take seeds < 2**32; strata add their index


def _check_seed(v, *, source: str, key: str) -> None:
    if isinstance(v, int) and not isinstance(v, bool) and not 0 <= v <= SEED_MAX:
        raise ConfigError(f"must be in [0, {SEED_MAX}]", source=source, key=key, value=v)


def _validate(raw: dict, path: str, trial_cls, *, smoke: bool, metrics) -> SweepSpec:
    if smoke:
        over = raw.get("smoke") or {}
        if not isinstance(over, dict):
            raise ConfigError("expected a mapping", source=path, key="smoke", value=over)
        bind(SmokeOverrides, over, source=path, prefix="smoke")
        raw = _merge({k: v for k, v in raw.items() if k != "smoke"}, {k: v for k, v in over.items() if v is not None})
    # ``source`` is the file's path, never a YAML key
    spec = dataclasses.replace(bind(SweepSpec, raw, source=path, internal=("source", "budgets")), source=path)
    if not NAME_RE.fullmatch(spec.name):
        raise ConfigError("must be 1-64 letters, digits, '.', '_' or '-' (it names directories)", source=path,
                          key="name", value=spec.name)
    if spec.num_samples < 1:
        raise ConfigError("must be >= 1", source=path, key="num_samples", value=spec.num_samples)
    _check_seed(spec.seed, source=path, key="seed")
    from reconlab.data import DATASETS

    if spec.dataset not in DATASETS:
        raise ConfigError(f"unknown dataset (known: {', '.join(DATASETS)})", source=path, key="dataset",
                          value=spec.dataset)
    if metrics and spec.metric not in metrics:
        raise ConfigError(f"unknown metric (known: {', '.join(metrics)})", source=path, key="metric",
                          value=spec.metric)
    sch = spec.scheduler
    if sch.grace_period < 1 or sch.reduction_factor < 2:
        raise ConfigError("need grace_period >= 1 and reduction_factor >= 2", source=path, key="scheduler",
                          value=dataclasses.asdict(sch))
    r = spec.resources_per_trial
    if not (0 <= r.cpu < math.inf and 0 <= r.gpu < math.inf):
        raise ConfigError("need finite cpu >= 0 and gpu >= 0", source=path, key="resources_per_trial",
                          value=dataclasses.asdict(r))
    for name, amount in r.custom.items():
        if name in RAY_BUILTIN_RESOURCES or not name or not 0 < amount < math.inf:
            raise ConfigError("need a resource name other than CPU, GPU or memory (those are cpu and gpu) and an "
                              "amount > 0", source=path, key=f"resources_per_trial.custom.{name}", value=amount)
    if spec.train.num_workers < 1 or (spec.train.epochs is not None and spec.train.epochs < 1):
        raise ConfigError("need num_workers >= 1 and epochs >= 1", source=path, key="train",
                          value=dataclasses.asdict(spec.train))
    types = _field_types(trial_cls)
    fixed = {}
    for name, v in spec.fixed.items():
        if name not in types:
            raise ConfigError(f"unknown trial parameter (allowed: {', '.join(sorted(types))})", source=path,
                              key=f"fixed.{name}", value=v)
        fixed[name] = check_value(types[name], v, source=path, key=f"fixed.{name}")
        if name == "seed":
            _check_seed(fixed[name], source=path, key="fixed.seed")
    _check_fixed(trial_cls, fixed, source=path)
    search = {}
    for name, p in spec.search.items():
        if name not in types:
            raise ConfigError(f"unknown trial parameter (allowed: {', '.join(sorted(types))})", source=path,
                              key=f"search.{name}", value=p)
        if name in fixed:
            raise ConfigError("both fixed and searched", source=path, key=f"search.{name}", value=p)
        ps = bind(ParamSpec, p, source=path, prefix=f"search.{name}")
        search[name] = validate_param(name, ps, types[name], trial_cls, source=path, fixed=fixed)
        if name == "seed":
            for i, v in enumerate(search[name].get("values") or [search[name]["low"], search[name]["high"]]):
                _check_seed(v, source=path, key=f"search.seed[{i}]")
    keys = spec.strata_keys()
    if spec.stratify is not None and (not keys or len(set(keys)) != len(keys) or any(
            k not in search or search[k]["type"] != "choice" for k in keys)):
        raise ConfigError("stratify must name 'choice' parameters under search (distinct)", source=path,
                          key="stratify", value=spec.stratify)
    if spec.paired and spec.stratify is None:
        raise ConfigError("paired pairs the strata's draws: it needs stratify", source=path, key="paired",
                          value=spec.paired)
    spec = dataclasses.replace(spec, fixed=fixed, search=search)
    per = getattr(trial_cls, "samples_per_stratum", None)
    if keys and per is not None:
        strata = [s if len(keys) > 1 else (s,) for s in spec.strata()]
        spec = dataclasses.replace(spec, budgets=tuple(per({**fixed, **dict(zip(keys, s))}) for s in strata))
    return spec
