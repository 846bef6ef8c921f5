"""Seeded Optuna TPE through Ray Tune, optionally one study per stratum.

A sweep that compares classifier variants should give each variant its own
budget and its own search: TPE over a shared categorical would spend most
trials on whichever variant looks best early. ``StratifiedSearch`` runs one
seeded ``OptunaSearch`` per value of the stratifying parameter and hands out
trials round-robin, so every variant gets ``num_samples`` trials.

Given a ``storage`` file, each study lives in SQLite next to the Tune
experiment (``DurableOptunaSearch``): a driver killed between two saves of
Tune's searcher state loses no told result, and a trial the restored
searcher does not know (asked after the last save, finished after the
restore) is added to its study instead of being dropped, as Ray's
``OptunaSearch`` does.
"""

from __future__ import annotations

import pickle

from ray.tune.search import Searcher
from ray.tune.search.optuna import OptunaSearch


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


def rdb_storage(url: str):
    """Optuna's storage for an SQLite ``url`` in write-ahead-log mode with
    ``synchronous=NORMAL``: a commit no longer waits for fsync, and a killed
    process still loses no committed trial (only a power cut could). Only the
    sweep's driver opens it, so WAL's single-machine rule holds on shared
    storage."""
    import optuna
    from sqlalchemy import event

    storage = optuna.storages.RDBStorage(url)

    @event.listens_for(storage.engine, "connect")
    def _pragmas(conn, _record):
        cur = conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.close()

    storage.engine.dispose()  # connections opened while creating the tables lack the pragmas
    return storage


TRIAL_ATTR = "ray_trial_id"  # user attribute linking an Optuna trial to its Tune trial


class DurableOptunaSearch(OptunaSearch):
    """``OptunaSearch`` that never drops a completed trial's result. With
    ``storage_url`` its study lives in that database: its pickled state (for
    Tune's experiment) holds the study's name and trial numbers, not the
    study, and is reloaded from the database."""

    def __init__(self, *args, storage_url: str | None = None, **kwargs):
        self._storage_url = storage_url
        super().__init__(*args, storage=rdb_storage(storage_url) if storage_url else None, **kwargs)

    def __getstate__(self):
        d = self.__dict__.copy()
        if self._storage_url:
            d.update(_ot_study=None, _storage=None,
                     _ot_trials={tid: t._trial_id for tid, t in self._ot_trials.items()})
        return d

    def __setstate__(self, d):
        self.__dict__.update(d)
        if self._storage_url and self._space:
            import optuna

            self._storage = rdb_storage(self._storage_url)
            self._ot_study = optuna.load_study(study_name=self._study_name, storage=self._storage,
                                               sampler=self._sampler)
            self._ot_trials = {tid: optuna.Trial(self._ot_study, n) for tid, n in d["_ot_trials"].items()}

    def save(self, checkpoint_path: str):
        with open(checkpoint_path, "wb") as f:
            pickle.dump(self.__getstate__(), f)

    def restore(self, checkpoint_path: str):
        with open(checkpoint_path, "rb") as f:
            self.__setstate__(pickle.load(f))

    def suggest(self, trial_id: str):
        cfg = super().suggest(trial_id)
        if self._storage is not None and trial_id in self._ot_trials:
            self._ot_trials[trial_id].set_user_attr(TRIAL_ATTR, trial_id)
        return cfg

    def _known(self, trial_id: str) -> bool:
        """Whether this searcher can tell the trial's result; recovers the
        Optuna trial from storage when the restored state predates it."""
        if trial_id in self._ot_trials:
            return True
        if self._storage is None:
            return False
        import optuna

        for t in self._ot_study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
            if t.user_attrs.get(TRIAL_ATTR) == trial_id:
                self._ot_trials[trial_id] = optuna.Trial(self._ot_study, t._trial_id)
                return True
        return False

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        """Intermediate results are not stored in the study: TPE reads them
        only for PRUNED trials, and a Tune trial is told COMPLETE with its last
        result even when ASHA stops it (MLflow holds every step). Storing them
        cost a SQLite transaction per report in the driver."""

    def on_trial_complete(self, trial_id: str, result=None, error: bool = False) -> None:
        if trial_id in self._completed_trials:
            return
        if error:  # not a result: the trial stays open in the study, for a resumed run to finish
            return
        if self._known(trial_id):
            return super().on_trial_complete(trial_id, result=result, error=error)
        config = (result or {}).get("config") or {}
        value = (result or {}).get(self.metric)
        params = {k: config[k] for k in self._space if k in config}
        if len(params) == len(self._space) and isinstance(value, (int, float)):
            self.add_evaluated_point(params, value)
        self._completed_trials.add(trial_id)


def optuna_search(space: dict, metric: str, mode: str, seed: int, storage: str | None = None,
                  study_name: str | None = None):
    """A seeded TPE ``DurableOptunaSearch``; ``storage``: an SQLite file for the study."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    sampler = optuna.samplers.TPESampler(seed=seed, n_startup_trials=min(5, max(2, len(space) // 2)))
    return DurableOptunaSearch(space={k: optuna_distribution(v) for k, v in space.items()}, metric=metric,
                               mode=mode, sampler=sampler, study_name=study_name,
                               storage_url=f"sqlite:///{storage}" if storage else None)


class StratifiedSearch(Searcher):
    """One searcher per value of ``key`` (or per combination of the values of
    several keys); suggestions alternate between them. ``per_stratum``: the
    trials of each stratum (one number, or one per value). ``paired``: the
    studies share ``seed``, so each stratum's random start-up draws are the
    same configurations (common random numbers: arms compared at the same
    settings); otherwise stratum i is seeded ``seed + i``."""

    def __init__(self, key: str | list[str], values: list, space: dict, metric: str, mode: str, seed: int,
                 per_stratum: int | list[int] | tuple[int, ...], storage: str | None = None, paired: bool = False):
        super().__init__(metric=metric, mode=mode)
        self.single = isinstance(key, str)
        self.keys = [key] if self.single else list(key)
        self.values = [v if self.single else tuple(v) for v in values]
        budgets = per_stratum if isinstance(per_stratum, (list, tuple)) else [per_stratum] * len(self.values)
        self.budget = dict(zip(self.values, budgets))
        rest = {k: v for k, v in space.items() if k not in self.keys}
        # nothing left to search (every parameter stratifies, e.g. a grid of
        # image x width): each stratum's trials are its fixed values
        self.inner = {v: optuna_search(rest, metric, mode, seed + (0 if paired else i), storage, f"stratum-{i}")
                      for i, v in enumerate(self.values)} if rest else {}
        self.count = {v: 0 for v in self.values}
        self.owner: dict[str, object] = {}

    def set_search_properties(self, metric, mode, config, **spec) -> bool:
        return True  # spaces are fixed at construction

    def suggest(self, trial_id: str):
        open_ = [v for v in self.values if self.count[v] < self.budget[v]]
        if not open_:
            return Searcher.FINISHED
        v = min(open_, key=lambda s: (self.count[s], self.values.index(s)))
        cfg = self.inner[v].suggest(trial_id) if self.inner else {}
        if cfg is None or cfg == Searcher.FINISHED:
            return cfg
        self.count[v] += 1
        self.owner[trial_id] = v
        return {**cfg, **dict(zip(self.keys, [v] if self.single else v))}

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        if trial_id in self.owner and self.inner:
            self.inner[self.owner[trial_id]].on_trial_result(trial_id, result)

    def on_trial_complete(self, trial_id: str, result=None, error: bool = False) -> None:
        v = self.owner.get(trial_id)
        if v is not None and self.inner:
            self.inner[v].on_trial_complete(trial_id, result=result, error=error)

    def save(self, checkpoint_path: str):
        with open(checkpoint_path, "wb") as f:
            pickle.dump(self.__dict__, f)

    def restore(self, checkpoint_path: str):
        with open(checkpoint_path, "rb") as f:
            state = pickle.load(f)
        if "budget" not in state and "per_stratum" in state:  # saved before per-stratum budgets
            n = state.pop("per_stratum")
            state["budget"] = {v: n for v in state["values"]}
        self.__dict__.update(state)


def make_searcher(spec, storage: str | None = None):
    """The searcher for a validated ``SweepSpec``; ``storage``: SQLite file for its studies."""
    if spec.stratify:
        return StratifiedSearch(spec.stratify, spec.strata(), spec.search, spec.metric, spec.mode, spec.seed,
                                spec.stratum_budgets(), storage, paired=spec.paired)
    return optuna_search(spec.search, spec.metric, spec.mode, spec.seed, storage, "sweep")
