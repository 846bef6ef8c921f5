"""Ray Tune plumbing shared by every sweep job: Ray start-up, the parent MLflow
run, the Tuner (seeded Optuna + ASHA), and result tables."""

from __future__ import annotations

import dataclasses
import json
import math
import os
import sys
from typing import Any, Callable

from reconlab import tracking


def prepare(args, spec):
    """The checks every sweep job makes before Ray starts: --num-samples,
    --num-workers, the storage directory and the tracking URI. Returns
    (spec, storage_dir, tracking_uri)."""
    from reconlab.errors import InputError

    if args.num_samples is not None:
        if args.num_samples < 1:
            raise InputError("must be >= 1", key="--num-samples", value=args.num_samples)
        spec = dataclasses.replace(spec, num_samples=args.num_samples)
    if getattr(args, "num_workers", None) is not None and args.num_workers < 1:
        raise InputError("must be >= 1", key="--num-workers", value=args.num_workers)
    if getattr(args, "max_concurrent_trials", None) is not None and args.max_concurrent_trials < 1:
        raise InputError("must be >= 1", key="--max-concurrent-trials", value=args.max_concurrent_trials)
    if getattr(args, "max_failures", 0) < 0:
        raise InputError("must be >= 0", key="--max-failures", value=args.max_failures)
    storage_dir = tracking.results_dir(args.storage_path)
    tracking.check_storage_dir(storage_dir)
    uri = tracking.resolve_tracking_uri(args.tracking_uri, storage_dir)
    tracking.check_tracking_uri(uri)
    if tracking.in_submitted_job() and not (args.tracking_uri or os.environ.get("MLFLOW_TRACKING_URI")
                                            or args.storage_path):
        tracking.announce(f"no --tracking-uri/--storage-path given under `ray job submit`: results go to "
                          f"{storage_dir} (MLflow: {tracking.redact(uri)}) on the head node")
    return spec, storage_dir, uri


def fix_num_workers(args, spec):
    """``--num-workers`` as a fixed trial value (for jobs whose trials each
    train with Ray Train); an InputError if the sweep searches it."""
    from reconlab.errors import InputError

    if args.num_workers is None:
        return spec
    if "num_workers" in spec.search:
        raise InputError("--num-workers conflicts with a searched num_workers", key="--num-workers",
                         value=args.num_workers)
    return dataclasses.replace(spec, fixed={**spec.fixed, "num_workers": args.num_workers})


def open_store(args, spec, uri: str, storage_dir: str, experiment: str):
    """The tracking client, the experiment (artifacts under the storage
    directory or on the server) and, on --resume, the sweep to resume with
    its spool locked: all checked before Ray starts. Returns (client,
    experiment id, SweepRun or None)."""
    c = tracking.client(uri)
    exp_id = tracking.experiment_id(c, experiment, storage_dir=storage_dir, uri=uri)
    return c, exp_id, (resume_sweep(c, exp_id, spec, storage_dir) if args.resume else None)


def sweep_job(args, spec, *, uri: str, storage_dir: str, experiment: str, setup: Callable, metric_keys,
              max_t: int, trial_files: Callable | None, finish: Callable, tags: dict[str, str] | None = None,
              max_concurrent: Callable[[], int] | None = None):
    """What every sweep job does once its input is checked: open the store
    and the experiment (and, on --resume, lock the sweep to resume) before
    Ray starts; start Ray; ``setup(client, experiment id)`` the job's own
    work before the sweep (train or reuse models, baselines), which returns
    (trainable, params for the parent run); then the parent run and the
    Tuner, with ``finish(grid, parent)`` writing the parent's results
    through the spool. A failure ends the parent FAILED. Returns (grid,
    sweep); ``sweep.undelivered`` > 0 means the store was away at the end
    (the job exits 1, ``reconlab sync`` finishes it). ``max_concurrent()``,
    asked once Ray runs: trials at once (default: what fits the cluster).
    ``tags``: the sweep run's (its study's name, title, research, command)."""
    c, exp_id, resumed = open_store(args, spec, uri, storage_dir, experiment)
    init_ray()
    trainable, extra_params = setup(c, exp_id)
    sweep = start_parent(c, exp_id, spec, storage_dir=storage_dir, resumed=resumed, extra_params=extra_params,
                         tags=tags)
    try:
        grid = run_tuner(spec, trainable, sweep=sweep, uri=uri, metric_keys=metric_keys, max_t=max_t,
                         trial_files=trial_files, finish=finish,
                         max_concurrent=(getattr(args, "max_concurrent_trials", None)
                                         or (max_concurrent() if max_concurrent else None)),
                         max_failures=args.max_failures)
    except BaseException as e:
        fail_parent(sweep, e)
        raise
    return grid, sweep


TRAIN_POLL_ENV = "RAY_TRAIN_HEALTH_CHECK_INTERVAL_S"
FORWARDED_ENV = ("RECONLAB_USE_GPU", TRAIN_POLL_ENV)  # training.launch.USE_GPU_ENV


def init_ray(*, num_cpus: int | None = None) -> None:
    """Connect to the cluster the job runs on (``ray job submit`` / RAY_ADDRESS)
    or start a local runtime. On a cluster the package ships with the job
    (``py_modules``), so it need not be pre-installed there."""
    import ray

    if ray.is_initialized():
        return
    import reconlab

    pkg_dir = os.path.dirname(os.path.abspath(reconlab.__file__))
    remote = bool(os.environ.get("RAY_ADDRESS")) or tracking.in_submitted_job()
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    # Ray Train's controller polls its workers every 2 s by default, so each
    # fit idles to the next poll at its start, reports and end: at 0.25 s a
    # 2-epoch classifier fit takes 0.77x the time (bench/train_poll.py).
    # Workers inherit it from a local runtime; on a
    # cluster it travels in the job's runtime env (FORWARDED_ENV).
    os.environ.setdefault(TRAIN_POLL_ENV, "0.25")
    if remote:
        # the settings the job's processes read on other nodes travel with it
        env_vars = {k: os.environ[k] for k in FORWARDED_ENV if k in os.environ}
        ray.init(runtime_env={"py_modules": [pkg_dir], **({"env_vars": env_vars} if env_vars else {})},
                 log_to_driver=True)
    else:
        # A local runtime is this job's alone, so its workers compute at the
        # driver's priority: at Ray's default niceness (15) they yield to any
        # other process, and Ray Train ran 0.77-0.89x a bare PyTorch loop on
        # 2 cores (0.87-0.98x at 0; bench/xor_throughput.py).
        os.environ.setdefault("RAY_worker_niceness", "0")
        # Token authentication for the runtime this job starts, whatever the
        # Ray version's default (the user's own RAY_AUTH_MODE is respected):
        # its GCS and raylet listen on all interfaces (docs/security.md).
        if os.environ.setdefault("RAY_AUTH_MODE", "token") == "token":
            # Ray reads its config once, at import: have it read the mode
            # again, as ray.init does when it turns token auth on by default
            from ray._raylet import Config

            Config.initialize("")
        # address="local": always a fresh runtime, never a stray `ray start` cluster
        ray.init(address="local", num_cpus=num_cpus, include_dashboard=False, log_to_driver=False)


def stop_points(spec, max_t: int) -> list[int]:
    """The reports (training_iteration) at which the sweep's scheduler may stop
    a trial: ASHA's rungs, grace_period * reduction_factor^k below max_t. A
    trial checkpoints there, so a stopped trial's last report has its state."""
    if spec.scheduler.type != "asha":
        return []
    grace, rf = asha_grace(spec, max_t), spec.scheduler.reduction_factor
    return [grace * rf**k for k in range(64) if grace * rf**k < max_t]


def asha_grace(spec, max_t: int) -> int:
    """ASHA's grace period, capped at max_t (a short sweep still gets a rung)."""
    return min(spec.scheduler.grace_period, max(max_t, 1))


def trial_concurrency(cpu: float, gpu: float, custom: dict[str, float] | None = None) -> int:
    """How many trials fit on the cluster as it is now (an autoscaling
    cluster may grow: there ``--max-concurrent-trials`` says how far)."""
    import ray

    res = ray.cluster_resources()
    limits = []
    if cpu > 0:
        limits.append(int(res.get("CPU", 1) // cpu))
    if gpu > 0:
        limits.append(int(res.get("GPU", 0) // gpu))
    limits += [int(res.get(name, 0) // amount) for name, amount in (custom or {}).items()]
    return max(1, min(limits) if limits else 1)


def trial_resources(res) -> dict[str, float]:
    """The Ray resources one trial holds (``tune.with_resources``): its CPUs,
    GPUs and any custom resources (``resources_per_trial.custom``)."""
    resources = {"cpu": res.cpu, "gpu": res.gpu, **res.custom}
    if res.cpu == 0 and res.gpu == 0 and not res.custom:  # Tune needs a non-empty bundle: a token of memory
        resources["memory"] = 1 << 20
    return resources


def train_concurrency(spec, trial_cls) -> int:
    """Trials at once when each trial's Tune function only waits while its
    TorchTrainer's workers (``num_workers`` x ``cpus_per_worker`` CPUs, or a
    GPU each) train: the most any trial of the sweep asks for must fit."""
    import ray

    def most(k):
        if k in spec.search:
            p = spec.search[k]
            return p["high"] if "high" in p else max(p["values"])
        return spec.fixed.get(k, getattr(trial_cls, k))

    res = ray.cluster_resources()
    if res.get("GPU", 0) >= 1:
        return max(1, int(res["GPU"] // most("num_workers")))
    return max(1, int(res.get("CPU", 1) // (most("num_workers") * most("cpus_per_worker"))))


TAG_TUNE_DIR = "reconlab.tune_dir"


@dataclasses.dataclass
class SweepRun:
    """The sweep's parent run, where its Tune experiment lives, and the lock
    on its spool (held from before Ray starts on --resume)."""

    client: Any
    exp_id: str
    run_id: str
    tune_dir: str
    name: str
    resumed: bool
    lock: Any = None
    parent: Any = None  # the spool's ParentLog while run_tuner runs
    undelivered: int = 0  # spooled writes the store had not taken when the sweep ended

    @property
    def spool_path(self) -> str:
        from reconlab.spool import SPOOL_FILE

        return os.path.join(self.tune_dir, SPOOL_FILE)


def tune_dir_for(storage_dir: str, name: str, run_id: str) -> str:
    """A sweep's Tune directory: derived from the storage directory, the
    sweep's name and its parent run, never read back from the store."""
    return os.path.join(storage_dir, "tune", f"{name}-{run_id[:8]}")


def resume_sweep(c, exp_id: str, spec, storage_dir: str) -> SweepRun | None:
    """The latest sweep of this name, to resume, with its spool locked (a
    second driver stops here with exit 2); None if there is none. Its Tune
    directory is derived from --storage-path: a run whose ``reconlab.tune_dir``
    tag points anywhere else is refused, since restoring unpickles what lies
    there."""
    from reconlab.errors import InputError
    from reconlab.spool import SpoolLock

    runs = tracking.find_runs(c, exp_id, {tracking.TAG_SWEEP: spec.name}, max_results=1)
    if not runs:
        return None
    r = runs[0]
    tune_dir = tune_dir_for(storage_dir, spec.name, r.info.run_id)
    tag = r.data.tags.get(TAG_TUNE_DIR)
    if tag is not None and os.path.realpath(tag) != os.path.realpath(tune_dir):
        raise InputError(f"sweep run {r.info.run_id} points its Tune directory outside --storage-path "
                         f"(expected {tune_dir}); not restoring from it", key=TAG_TUNE_DIR, value=tag)
    sweep = SweepRun(c, exp_id, r.info.run_id, tune_dir, spec.name, True)
    sweep.lock = SpoolLock(sweep.spool_path)
    return sweep


def start_parent(c, exp_id: str, spec, *, storage_dir: str, resumed: SweepRun | None, extra_params: dict,
                 tags: dict[str, str] | None = None) -> SweepRun:
    """Create the sweep's parent run, or reuse the one ``resume_sweep`` found
    (``tags`` are set on it too: a sweep of an older reconlab gains its
    study's)."""
    from reconlab.spool import SpoolLock

    name = spec.name
    if resumed is not None:
        for k, v in (tags or {}).items():
            c.set_tag(resumed.run_id, k, v)
        c.update_run(resumed.run_id, status="RUNNING")
        return resumed
    run = c.create_run(exp_id, run_name=f"{name}-sweep",
                       tags={tracking.TAG_SWEEP: name, **tracking.source_tags(), **(tags or {})})
    if extra_params.get("dataset") and extra_params.get("data_fingerprint"):  # the UI's Dataset column
        c.log_inputs(run.info.run_id, datasets=[tracking.dataset_input(extra_params["dataset"],
                                                                       extra_params["data_fingerprint"])])
    tune_dir = tune_dir_for(storage_dir, name, run.info.run_id)
    c.set_tag(run.info.run_id, TAG_TUNE_DIR, tune_dir)
    params = {"search_space": spec.source, "seed": spec.seed, "metric": spec.metric, "mode": spec.mode,
              "num_samples": spec.num_samples, "stratify": spec.stratify, **extra_params}
    c.log_batch(run.info.run_id, params=tracking.params_of(params))
    c.log_text(run.info.run_id, json.dumps(dataclasses.asdict(spec), indent=2, default=str), "search_space.json")
    sweep = SweepRun(c, exp_id, run.info.run_id, tune_dir, name, False)
    sweep.lock = SpoolLock(sweep.spool_path)
    return sweep


def fail_parent(sweep: SweepRun | None, e: BaseException) -> None:
    """Mark the sweep's parent run FAILED (KILLED on Ctrl-C), unless it was
    ended already. Best effort: a store that is away only gets a line."""
    if sweep is None or (sweep.parent is not None and sweep.parent.ended):
        return
    try:
        sweep.client.set_tag(sweep.run_id, "reconlab.error", f"{type(e).__name__}: {e}"[:4000])
        sweep.client.set_terminated(sweep.run_id, "KILLED" if isinstance(e, KeyboardInterrupt) else "FAILED")
    except Exception as err:
        tracking.announce(f"could not mark the sweep run {sweep.run_id} failed ({type(err).__name__})")


def marking_asha(**kw):
    """Tune's ASHA scheduler, marking each trial it stops before the trial
    finished (``trial.stopped_early``: the progress line counts them; Tune
    itself records them as TERMINATED like any other)."""
    from ray.tune.schedulers import ASHAScheduler, TrialScheduler

    class MarkingASHA(ASHAScheduler):
        def on_trial_result(self, tune_controller, trial, result):
            decision = super().on_trial_result(tune_controller, trial, result)
            if (decision == TrialScheduler.STOP and not result.get("done")
                    and result.get(self._time_attr, 0) < self._max_t):
                trial.stopped_early = True
            return decision

    return MarkingASHA(**kw)


def run_tuner(spec, trainable: Callable, *, sweep: SweepRun, uri: str, metric_keys, max_t: int,
              trial_files: Callable | None = None, finish: Callable | None = None, verbose: int = 0,
              max_concurrent: int | None = None, max_failures: int = 3, flush_timeout_s: float | None = None):
    """Fit (or restore and finish) the Tune experiment; returns the ResultGrid.

    Trial runs go to MLflow through the sweep's spool (``reconlab.spool``);
    the Optuna studies live in ``optuna.db`` beside the experiment; a trial
    that raises is retried from its last checkpoint up to ``max_failures``
    times. ``trial_files(ref)`` renders a finished trial's files (written
    under the storage directory when it ends, see ``spool.Spool``). ``finish(grid, parent)`` writes the parent run's
    results through the spool (a ``spool.ParentLog``) and ends it; without
    it the parent is ended FINISHED. A failure ends the parent FAILED, also
    through the spool. What the store has not taken when the sweep ends is
    counted in ``sweep.undelivered`` and left for ``reconlab sync``.
    Progress is one live line (``reconlab.progress``); ``verbose`` > 0 adds
    Tune's own trial table."""
    from ray import tune
    from ray.exceptions import RayActorError
    from ray.tune.logger import CSVLoggerCallback, JsonLoggerCallback
    from ray.tune.schedulers import FIFOScheduler

    from reconlab.progress import progress_callback
    from reconlab.spool import ParentLog, Spool, register_spool
    from reconlab.sweep.callback import trial_callback
    from reconlab.sweep.nodes import ReportNode
    from reconlab.sweep.restore import RestoreFromNewest
    from reconlab.sweep.searcher import make_searcher

    if flush_timeout_s is None:  # how long the end of a sweep waits for an absent store
        flush_timeout_s = float(os.environ.get("RECONLAB_FLUSH_TIMEOUT_S", 600))

    # save the experiment state every few seconds, so a killed driver redoes little
    os.environ.setdefault("TUNE_GLOBAL_CHECKPOINT_S", "2")
    # Tune's own result files: the CSV and JSON that its ResultGrid reads, not
    # the TensorBoard events (MLflow holds every metric; writing and flushing
    # them was most of the driver's time per result)
    os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")
    res = spec.resources_per_trial
    # a checkpoint deleted before Tune's saved state caught up is not a lost
    # trial; each result names its Ray node (the trial run's node tags)
    trainable.__mixins__ = (RestoreFromNewest, ReportNode)
    trainable = tune.with_resources(trainable, trial_resources(res))
    spool = Spool(sweep.spool_path, uri, sweep.exp_id, sweep.run_id, spec.metric, trial_files, lock=sweep.lock)
    sweep.lock = None  # the spool holds it now, and releases it on close
    register_spool(spool)
    sweep.parent = ParentLog(spool)
    storage, name = os.path.split(sweep.tune_dir)
    run_config = tune.RunConfig(
        name=name, storage_path=storage,
        callbacks=[trial_callback(spool.path, metric_keys), CSVLoggerCallback(), JsonLoggerCallback(),
                   progress_callback(spec.total_samples(), spec.metric, spec.mode)],
        verbose=verbose, failure_config=tune.FailureConfig(max_failures=max_failures),
        checkpoint_config=tune.CheckpointConfig(num_to_keep=2),
        progress_reporter=tune.CLIReporter(metric_columns=[spec.metric, "step"], max_report_frequency=30,
                                           parameter_columns=list(spec.search)[:4]) if verbose else None,
    )
    if sweep.resumed and tune.Tuner.can_restore(sweep.tune_dir):
        tuner = tune.Tuner.restore(sweep.tune_dir, trainable=trainable, resume_errored=True)
    else:
        if spec.scheduler.type == "asha":
            scheduler = marking_asha(time_attr="training_iteration", max_t=max(max_t, 1),
                                     grace_period=asha_grace(spec, max_t),
                                     reduction_factor=spec.scheduler.reduction_factor)
        else:
            scheduler = FIFOScheduler()
        tuner = tune.Tuner(
            trainable,
            param_space={"seed": spec.seed, **spec.fixed},  # every trial logs its seed
            tune_config=tune.TuneConfig(
                metric=spec.metric, mode=spec.mode, scheduler=scheduler,
                search_alg=make_searcher(spec, os.path.join(sweep.tune_dir, "optuna.db")),
                num_samples=spec.total_samples(),
                max_concurrent_trials=max_concurrent or trial_concurrency(res.cpu, res.gpu, res.custom),
                reuse_actors=True,
            ),
            run_config=run_config,
        )
    try:
        grid = tuner.fit()
        for round_ in range(1, max_failures + 1):
            # Tune does not retry a trial whose reused actor died before the
            # trial started (it is still PENDING then): resume those here
            lost = [r for r in grid.errors if isinstance(r, RayActorError)]
            if not lost:
                break
            tracking.announce(f"{len(lost)} trial(s) ended when their worker process died; resuming them "
                              f"(round {round_}/{max_failures})")
            grid = tune.Tuner.restore(sweep.tune_dir, trainable=trainable, resume_errored=True).fit()
        if finish is not None:
            finish(grid, sweep.parent)
        if not sweep.parent.ended:
            sweep.parent.set_terminated("FINISHED")
    except BaseException as e:
        if not sweep.parent.ended:
            sweep.parent.set_terminated("KILLED" if isinstance(e, KeyboardInterrupt) else "FAILED",
                                        f"{type(e).__name__}: {e}")
        spool.flush(min(flush_timeout_s, 30))
        spool.close()
        raise
    try:
        if not spool.flush(flush_timeout_s):
            sweep.undelivered = spool.pending()
            tracking.announce(f"tracking store still unreachable: {spool.pending()} writes (the sweep run's results "
                              f"among them) wait in {spool.path}; deliver them with `reconlab sync {sweep.tune_dir}`")
        else:
            counts = spool.reconcile(outcomes(grid))
            if counts["orphans"]:
                tracking.announce(f"closed {counts['orphans']} trial run(s) orphaned by a killed driver")
        if spool.errors:
            tracking.announce(f"{len(spool.errors)} tracking write(s) not delivered: refused by the store or a "
                              f"file gone (first: {spool.errors[0]})")
        return grid
    finally:
        spool.close()


def trials_of(grid) -> list:
    """Every ``Trial`` of a ResultGrid's experiment, including those that never
    reported (the grid's ``Result``s carry no config or id for them)."""
    return grid._experiment_analysis.trials


def ranked(results, metric: str, mode: str) -> list:
    """``results`` best first by ``metric``; among ties, the lowest trial id.
    Deterministic whatever order the ResultGrid lists trials in (it differs
    after a --resume), so a resumed sweep logs the same best config."""
    sign = 1 if mode == "max" else -1
    return sorted(results, key=lambda r: (-sign * r.metrics[metric], str(r.metrics.get("trial_id", ""))))


def best_result(results, metric: str, mode: str):
    """The best of ``results`` (``ranked``'s first)."""
    return ranked(results, metric, mode)[0]


def outcomes(grid) -> dict[str, tuple[str, str | None]]:
    """trial id -> (MLflow status, reason) for every trial of the experiment
    (the ResultGrid's ``Trial`` objects: a trial that never reported has no id
    in its metrics)."""
    out = {}
    for t in trials_of(grid):
        err = (tracking.error_line(t) or "trial raised an error") if t.status == "ERROR" else None
        out[t.trial_id] = tracking.trial_outcome(t.last_result, err)
    return out


def finite(v) -> bool:
    return isinstance(v, (int, float)) and math.isfinite(v)


def markdown_table(rows: list[dict], columns: list[str]) -> str:
    def fmt(v):
        return f"{v:.3g}" if isinstance(v, float) else str(v)

    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(fmt(r.get(c, "")) for c in columns) + " |" for r in rows]
    return "\n".join(lines)


def log_table(parent, rows: list[dict], columns: list[str], notes: list[str], name: str) -> None:
    """``<name>.md`` (table + bullet notes) and ``<name>.csv`` on the sweep's
    parent run (a ``spool.ParentLog``)."""
    import csv
    import io

    md = markdown_table(rows, columns) + "\n\n" + "\n".join(f"- {n}" for n in notes) + "\n"
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=columns, extrasaction="ignore")
    w.writeheader()
    w.writerows(rows)
    parent.log_text(md, f"{name}.md")
    parent.log_text(buf.getvalue(), f"{name}.csv")


def print_ui_hint(uri: str, exp_id: str | None = None) -> None:
    page = f"/#/experiments/{exp_id}/runs?workflowType=machine_learning" if exp_id else ""
    if uri.startswith("sqlite:"):
        cmd = f"mlflow ui --host 127.0.0.1 --port 5000 --backend-store-uri {uri}"
        print(f"\nOpen the MLflow UI:  {cmd}\n  (or `make ui`), then browse http://127.0.0.1:5000{page}", file=sys.stdout)
    else:
        print(f"\nMLflow: {tracking.redact(uri)}" + (f" (experiment {exp_id}: {page.lstrip('/')})" if page else ""))
