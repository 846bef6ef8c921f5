"""Seeded Optuna TPE through Ray Tune, optionally one study per stratum.

A sweep that compares classifier variants should give each variant its own
budget and its own search: TPE over a shared categorical would spend most
trials on whichever variant looks best early. ``StratifiedSearch`` runs one
seeded ``OptunaSearch`` per value of the stratifying parameter and hands out
trials round-robin, so every variant gets ``num_samples`` trials.
"""

from __future__ import annotations

import pickle

from ray.tune.search import Searcher


def optuna_distribution(p: dict):
    """A validated search-space entry as an Optuna distribution (high inclusive)."""
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    t = p["type"]
    if t == "choice":
        return CategoricalDistribution(p["values"])
    if t in ("uniform", "loguniform"):
        return FloatDistribution(float(p["low"]), float(p["high"]), log=t == "loguniform")
    if t in ("int", "logint"):
        return IntDistribution(int(p["low"]), int(p["high"]), step=p.get("step", 1), log=t == "logint")
    raise ValueError(t)


def optuna_search(space: dict, metric: str, mode: str, seed: int):
    import optuna
    from ray.tune.search.optuna import OptunaSearch

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    sampler = optuna.samplers.TPESampler(seed=seed, n_startup_trials=min(5, max(2, len(space) // 2)))
    return OptunaSearch(space={k: optuna_distribution(v) for k, v in space.items()}, metric=metric, mode=mode,
                        sampler=sampler)


class StratifiedSearch(Searcher):
    """One searcher per value of ``key`` (or per combination of the values of
    several keys); suggestions alternate between them."""

    def __init__(self, key: str | list[str], values: list, space: dict, metric: str, mode: str, seed: int,
                 per_stratum: int):
        super().__init__(metric=metric, mode=mode)
        self.single = isinstance(key, str)
        self.keys = [key] if self.single else list(key)
        self.values = [v if self.single else tuple(v) for v in values]
        self.per_stratum = per_stratum
        rest = {k: v for k, v in space.items() if k not in self.keys}
        self.inner = {v: optuna_search(rest, metric, mode, seed + i) for i, v in enumerate(self.values)}
        self.count = {v: 0 for v in self.values}
        self.owner: dict[str, object] = {}

    def set_search_properties(self, metric, mode, config, **spec) -> bool:
        return True  # spaces are fixed at construction

    def suggest(self, trial_id: str):
        open_ = [v for v in self.values if self.count[v] < self.per_stratum]
        if not open_:
            return Searcher.FINISHED
        v = min(open_, key=lambda s: (self.count[s], self.values.index(s)))
        cfg = self.inner[v].suggest(trial_id)
        if cfg is None or cfg == Searcher.FINISHED:
            return cfg
        self.count[v] += 1
        self.owner[trial_id] = v
        return {**cfg, **dict(zip(self.keys, [v] if self.single else v))}

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        if trial_id in self.owner:
            self.inner[self.owner[trial_id]].on_trial_result(trial_id, result)

    def on_trial_complete(self, trial_id: str, result=None, error: bool = False) -> None:
        v = self.owner.get(trial_id)
        if v is not None:
            self.inner[v].on_trial_complete(trial_id, result=result, error=error)

    def save(self, checkpoint_path: str):
        with open(checkpoint_path, "wb") as f:
            pickle.dump(self.__dict__, f)

    def restore(self, checkpoint_path: str):
        with open(checkpoint_path, "rb") as f:
            self.__dict__.update(pickle.load(f))


def make_searcher(spec):
    """The searcher for a validated ``SweepSpec``."""
    if spec.stratify:
        return StratifiedSearch(spec.stratify, spec.strata(), spec.search, spec.metric, spec.mode, spec.seed,
                                spec.num_samples)
    return optuna_search(spec.search, spec.metric, spec.mode, spec.seed)
