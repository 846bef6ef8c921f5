"""A study, declared once, and the engine that drives it.

A study is one piece of research reproduced, or a user's own experiment: a
trial function, a trial config (the dataclass its YAML search space binds
to), the metrics its trials report, and optional hooks. ``run_study`` does
everything else every job needs: the shared flags, the search space, the
checks before Ray starts, the store and experiment, --resume and its lock,
Ray, the sweep's parent run (tagged with the study), the Tuner, progress,
the trials' files, the summary and the UI hint.

    STUDY = Study(name="mine", title="...", research="...", command="python my_job.py",
                  search_space="my_space.yaml", config=MyTrialConfig, metrics=("loss",),
                  trainable=my_trial)

    if __name__ == "__main__":
        sys.exit(run_study(STUDY))

The hooks, each called with the ``Job`` (args, spec, storage directory,
store, data, and ``out`` for what one hook leaves the next):

- ``flags(parser)``: the study's own command-line flags;
- ``check(job)``: input checks before Ray starts (raise ``InputError``); may
  replace ``job.spec`` and load ``job.data`` (``job.load_data()``);
- ``setup(job) -> (trainable, params)``: what the study trains or loads once
  Ray runs (``job.client``/``job.exp_id`` are the store), the Tune function
  and the params to log on the sweep run; without it, ``trainable``;
- ``finish(job, grid, parent)``: the sweep run's tables, verdicts and
  figures (``parent`` is a ``spool.ParentLog``); without it, the best trials;
- ``summary(job, grid)``: what the job prints at the end; without it, the
  best trials;
- ``trial_files(ref) -> {name: bytes}``: a finished trial's files (grids,
  models, curves) from its ``ref`` (config, last result, checkpoint path),
  written under the storage directory when the trial ends;
- ``max_t(job)``: reports of the longest trial (ASHA's horizon);
- ``max_concurrent(job)``: trials at once, asked once Ray runs;
- ``metric_keys(job)``: the metrics trials log, when not ``metrics``.

Studies are found through the ``reconlab.studies`` entry-point group
(``installed()``), so an installed package adds one; the engine never
imports a study by name.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import re
import sys
import time
from typing import Any, Callable, Iterable

ENTRY_POINTS = "reconlab.studies"
TAG_STUDY = "reconlab.study"  # on the sweep run: the study's name; title, research, command beside it
TAG_TITLE = "reconlab.study.title"
TAG_RESEARCH = "reconlab.study.research"
TAG_COMMAND = "reconlab.study.command"
NAME_RE = re.compile(r"[a-z][a-z0-9_]{0,39}")


@dataclasses.dataclass(frozen=True)
class Study:
    """One study: what it is, what its trials are, and the hooks the engine
    calls (module docstring)."""

    name: str
    title: str
    research: str
    command: str
    search_space: str
    config: type
    metrics: tuple[str, ...]
    trainable: Callable | None = None
    description: str = ""
    experiment: str | None = None  # the default MLflow experiment (reconlab-<name>)
    flags: Callable[[argparse.ArgumentParser], None] | None = None
    check: Callable[[Job], None] | None = None
    setup: Callable[[Job], tuple[Callable, dict]] | None = None
    finish: Callable[[Job, Any, Any], None] | None = None
    summary: Callable[[Job, Any], None] | None = None
    trial_files: Callable[[dict], dict[str, bytes]] | None = None
    max_t: Callable[[Job], int] | int = 10**6
    max_concurrent: Callable[[Job], int] | None = None
    metric_keys: Callable[[Job], Iterable[str]] | None = None

    def __post_init__(self):
        if not NAME_RE.fullmatch(self.name):
            raise ValueError(f"study name {self.name!r}: 1-40 lower-case letters, digits or '_', a letter first")
        if not dataclasses.is_dataclass(self.config):
            raise TypeError(f"study {self.name!r}: config must be a dataclass (its YAML keys bind to it)")
        if "seed" not in {f.name for f in dataclasses.fields(self.config)}:
            raise TypeError(f"study {self.name!r}: config needs a 'seed' field (every trial is given the sweep's "
                            "seed, and logs it)")
        if self.trainable is None and self.setup is None:
            raise TypeError(f"study {self.name!r}: give a trainable, or a setup that returns one")
        if not self.metrics:
            raise ValueError(f"study {self.name!r}: name the metrics its trials report")

    def default_experiment(self, smoke: bool) -> str:
        name = self.experiment or f"reconlab-{self.name.replace('_', '-')}"
        return f"{name}-smoke" if smoke else name

    def tags(self) -> dict[str, str]:
        """What the sweep run records of its study: tools find studies from runs."""
        return {TAG_STUDY: self.name, TAG_TITLE: self.title, TAG_RESEARCH: self.research, TAG_COMMAND: self.command}


@dataclasses.dataclass
class Job:
    """One run of a study: what the hooks read and share."""

    study: Study
    args: argparse.Namespace
    spec: Any  # sweep.spec.SweepSpec
    storage_dir: str
    uri: str
    experiment: str = ""
    data: Any = None  # a reconlab.data Dataset, once load_data() ran
    client: Any = None  # the MLflow client (from setup on)
    exp_id: str | None = None
    sweep: Any = None  # runner.SweepRun, once the sweep ended
    out: dict = dataclasses.field(default_factory=dict)  # what finish leaves for summary
    started: float = dataclasses.field(default_factory=time.time)

    @property
    def smoke(self) -> bool:
        return bool(self.args.smoke_test)

    @property
    def threads(self) -> int:
        """Torch threads per trial: the CPUs a trial holds."""
        return max(1, int(self.spec.resources_per_trial.cpu))

    def load_data(self, name: str | None = None):
        """The sweep's dataset (``--data-root`` for real formats); logged on the sweep run."""
        from reconlab.data import load_dataset

        self.data = load_dataset(name or self.spec.dataset, self.args.data_root)
        return self.data

    def training(self, data=None) -> dict:
        """What the ``training.logged.ensure_*`` helpers take from the job to
        train a model once with Ray Train or reuse it from the store: the
        data (``data``, default the sweep's; ``--data-root`` reads only the
        sweep's), the store, where Ray Train writes, ``--num-workers`` (else
        the YAML's ``train.num_workers``) and ``--retrain``."""
        from reconlab import tracking

        data = self.data if data is None else data
        return {"dataset": data, "data_root": self.args.data_root if data is self.data else None, "uri": self.uri,
                "storage_dir": self.storage_dir,
                "num_workers": getattr(self.args, "num_workers", None) or self.spec.train.num_workers,
                "retrain": bool(getattr(self.args, "retrain", False)), "log": tracking.announce}

    def fixed(self, key: str):
        """A trial value (or property) of the config the sweep's fixed values make."""
        return getattr(self.study.config(**self.spec.fixed), key)

    def largest(self, key: str):
        """The largest value a trial parameter takes in the sweep."""
        if key in self.spec.search:
            p = self.spec.search[key]
            return p["high"] if "high" in p else max(p["values"])
        return self.fixed(key)

    def reports(self, total_key: str, every_key: str = "report_every") -> int:
        """Reports of the longest trial that reports every ``every_key`` of ``total_key`` steps."""
        return math.ceil(self.largest(total_key) / self.fixed(every_key))


def train_flags(p: argparse.ArgumentParser, per: str = "classifier", retrain: bool = True) -> None:
    """``--num-workers`` (Ray Train workers per model) and ``--retrain``: the
    flags of every study that trains models before or in its trials."""
    if retrain:
        p.add_argument("--retrain", action="store_true", help="train the models even if logged ones exist")
    p.add_argument("--num-workers", type=int, help=f"Ray Train workers per {per} (overrides the YAML)")


def installed(strict: bool = True) -> dict[str, Study]:
    """Every study installed in this environment (entry-point group
    ``reconlab.studies``), by name, in entry-point order. An entry point that
    does not load, or is not a Study, is an ``InputError`` naming it
    (``strict``), else a warning line and a study left out."""
    from importlib.metadata import entry_points

    from reconlab.errors import InputError

    out: dict[str, Study] = {}
    for ep in entry_points(group=ENTRY_POINTS):
        try:
            study = ep.load()
            if not isinstance(study, Study):
                raise TypeError(f"a {type(study).__name__}, not a reconlab Study")
        except Exception as e:
            msg = f"does not load a study: {type(e).__name__}: {e}"
            if strict:
                raise InputError(msg, key=f"entry point {ENTRY_POINTS}:{ep.name}", value=ep.value) from None
            print(f"[reconlab] entry point {ENTRY_POINTS}:{ep.name} = {ep.value} {msg}; left out", file=sys.stderr)
            continue
        out[study.name] = study
    return out


# ------------------------------------------------------------------ the engine


def job_parser(prog: str, description: str, default_space: str) -> argparse.ArgumentParser:
    """The flags every job shares (DESIGN.md's contract), defined once."""
    from reconlab.errors import OneLineParser

    p = OneLineParser(prog=prog, description=description, allow_abbrev=False)
    p.add_argument("--smoke-test", action="store_true", help="tiny, fast version of the whole job")
    p.add_argument("--tracking-uri", help="MLflow URI (default: $MLFLOW_TRACKING_URI, else SQLite in the storage dir)")
    p.add_argument("--experiment", help="MLflow experiment name (default: reconlab-<study>[-smoke])")
    p.add_argument("--storage-path", help="directory for Ray results and the default MLflow store")
    p.add_argument("--num-samples", type=int, help="trials (per stratum), overriding the search space")
    p.add_argument("--search-space", default=default_space, help="YAML search space")
    p.add_argument("--data-root", help="directory with real datasets (e.g. MNIST IDX files)")
    p.add_argument("--resume", action="store_true", help="continue the last sweep of this name")
    p.add_argument("--max-concurrent-trials", type=int,
                   help="trials at once (default: what fits the cluster now; set it on an autoscaling cluster, "
                        "whose size now is not its limit)")
    p.add_argument("--max-failures", type=int, default=3,
                   help="retries of a failed trial, each from its last checkpoint (default 3)")
    return p


def parser(study: Study, prog: str | None = None) -> argparse.ArgumentParser:
    """The shared flags (``job_parser``) and the study's own."""
    import os

    p = job_parser(prog or os.path.basename(sys.argv[0] or study.name), study.description or study.title,
                   os.path.normpath(study.search_space))
    if study.flags is not None:
        study.flags(p)
    return p


def run_study(study: Study, argv: list[str] | None = None, prog: str | None = None) -> int:
    """A job's whole life with the exit-code contract: 0 done, 2 bad input
    (one line, before Ray starts), 1 a runtime failure or writes the store
    has not taken yet (``reconlab sync`` finishes them)."""
    from reconlab.errors import run_job

    return run_job(lambda a: _run(study, a, prog), argv)


def _run(study: Study, argv: list[str] | None, prog: str | None) -> int:
    started = time.time()
    from reconlab import tracking
    from reconlab.sweep.runner import prepare, print_ui_hint, sweep_job
    from reconlab.sweep.spec import load_spec

    args = parser(study, prog).parse_args(argv)
    spec, storage_dir, uri = prepare(args, load_spec(args.search_space, study.config, smoke=args.smoke_test,
                                                     metrics=study.metrics))
    job = Job(study, args, spec, storage_dir, uri, started=started)
    if study.check is not None:
        study.check(job)
    job.experiment = args.experiment or study.default_experiment(job.smoke)

    def setup(c, exp_id):
        job.client, job.exp_id = c, exp_id
        trainable, params = study.setup(job) if study.setup is not None else (study.trainable, {})
        base = {"smoke_test": job.smoke}
        if job.data is not None:
            base |= {"dataset": job.data.name, "data_fingerprint": job.data.fingerprint()}
        return trainable, {**base, **params}

    def finish(grid, parent):
        (study.finish or best_trials_finish)(job, grid, parent)
        parent.log_batch(metrics={"trials": len(grid), "trials_failed": len(grid.errors)})

    max_t = study.max_t(job) if callable(study.max_t) else study.max_t
    grid, job.sweep = sweep_job(
        args, job.spec, uri=uri, storage_dir=storage_dir, experiment=job.experiment, setup=setup,
        metric_keys=list(study.metric_keys(job) if study.metric_keys else study.metrics), max_t=max_t,
        trial_files=study.trial_files, finish=finish, tags=study.tags(),
        max_concurrent=(lambda: study.max_concurrent(job)) if study.max_concurrent else None)
    (study.summary or best_trials_summary)(job, grid)
    print(f"\n{len(grid)} trials in {time.time() - job.started:.0f}s; MLflow experiment '{job.experiment}' at "
          f"{tracking.redact(uri)}")
    print_ui_hint(uri, job.sweep.exp_id)
    return 1 if job.sweep.undelivered else 0


# ------------------------------------------- what a study without its own tables gets

TOP_TRIALS = 10


def best_trials(job: Job, grid) -> tuple[list[dict], list[str]]:
    """The best trials by the sweep's objective (ties: the lowest trial id),
    with the values they were given: (rows, columns)."""
    from reconlab.sweep.runner import finite, ranked

    spec = job.spec
    ok = ranked([r for r in grid if r.error is None and r.metrics and finite(r.metrics.get(spec.metric))],
                spec.metric, spec.mode)
    params = [*spec.search, *(k for k in spec.fixed if k not in spec.search)]
    metrics = [spec.metric, *(m for m in job.study.metrics if m != spec.metric)]
    rows = [{"trial": r.metrics.get("trial_id", ""), **{m: r.metrics.get(m, "") for m in metrics},
             **{k: r.config.get(k, "") for k in params}} for r in ok[:TOP_TRIALS]]
    return rows, ["trial", *metrics, *params]


def best_trials_finish(job: Job, grid, parent) -> None:
    from reconlab.sweep.runner import log_table

    rows, cols = best_trials(job, grid)
    job.out["best_trials"] = (rows, cols)
    log_table(parent, rows, cols, [f"the best {len(rows)} of {len(grid)} trials by {job.spec.metric} "
                                   f"({job.spec.mode})"], "best_trials")


def best_trials_summary(job: Job, grid) -> None:
    from reconlab.sweep.runner import markdown_table

    rows, cols = job.out.get("best_trials") or best_trials(job, grid)
    print(f"\n{job.study.title}: the best trials of '{job.spec.name}' by {job.spec.metric} ({job.spec.mode})\n")
    print(markdown_table(rows, cols))
