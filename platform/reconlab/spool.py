"""A write-ahead spool between a sweep and MLflow: nothing lost, nothing doubled.

The Tune driver never writes a trial's run directly. Each callback appends one
JSON line to ``<tune dir>/mlflow_spool.jsonl`` and returns; the write reaches
the OS before the callback returns, so a SIGKILL of the driver loses nothing
Tune has seen. One background thread delivers the lines in order, in rounds
(``BATCH_S`` apart), a run's params and queued points in one call. When the
tracking server is away it waits and retries the same round (trials keep
running, the spool grows); a resumed sweep, or ``reconlab sync``, delivers
whatever is left.

Every operation is idempotent, so a line delivered twice (a crash between
delivery and the bookkeeping in ``<spool>.done``) changes nothing:

- a trial's run is found by (parent run, trial id) before one is created,
  wherever one may exist (a trial of an earlier process, or any trial after
  a failed call);
- metric points carry the trial's step, and a point at or below the last step
  the run already holds is skipped. That also drops the steps a retried trial
  redoes after restoring its checkpoint: its history stays gap- and
  duplicate-free;
- tags, artifacts and the final status overwrite with the same values.

Line format: ``{"op": "header"|"start"|"metrics"|"end", ...}``; see ``Spool``.
"""

from __future__ import annotations

import json
import logging
import os
import queue
import threading
import time
from typing import Any, Callable

from reconlab import tracking

log = logging.getLogger(__name__)

SPOOL_FILE = "mlflow_spool.jsonl"
TAG_ORPHAN = "reconlab.orphan"
RETRY_WAIT_S = (0.5, 1, 2, 4, 8)  # then every 8 s
# Delivery runs in rounds this far apart: the lines queued meanwhile go in
# one round, each run's metric points in one call. The store lags the sweep
# by at most this much, and the driver's CPU per trial (which a one-at-a-time
# trial on every core pays for) falls with the number of calls.
BATCH_S = 1.0
MAX_ENTRIES_PER_BATCH = 1000  # MLflow's log_batch limits: entries in all, and params among them
MAX_PARAMS_PER_BATCH = 100
# MLflow error codes that mean "try again later" (anything that is not an
# MlflowException, e.g. a refused connection, counts as one too)
TRANSIENT = {"INTERNAL_ERROR", "TEMPORARILY_UNAVAILABLE", "REQUEST_LIMIT_EXCEEDED", "RESOURCE_EXHAUSTED",
             "DEADLINE_EXCEEDED", "ABORTED"}


def transient(e: Exception) -> bool:
    from mlflow.exceptions import MlflowException

    return not isinstance(e, MlflowException) or e.error_code in TRANSIENT


def read_lines(path: str) -> list[dict | None]:
    """Every line of a spool; ``None`` for one a kill cut short."""
    out: list[dict | None] = []
    with open(path, "rb") as f:
        for raw in f:
            try:
                out.append(json.loads(raw))
            except ValueError:
                out.append(None)
    return out


def done_count(path: str) -> int:
    """How many lines of the spool at ``path`` are delivered."""
    try:
        with open(path + ".done") as f:
            return int(f.read().strip() or 0)
    except (FileNotFoundError, ValueError):
        return 0


class Spool:
    """Append (driver thread) and deliver (background thread) tracking ops.

    ``artifacts(ref)`` renders {file name: bytes} for a finished trial from the
    ``ref`` its ``end`` line carries (checkpoint path, config, last result), so
    a replay after a crash can still render them.
    """

    def __init__(self, path: str, uri: str, exp_id: str, parent_run_id: str, step_key: str,
                 artifacts: Callable[[dict], dict[str, bytes]] | None = None, deliver: bool = True,
                 batch_s: float = BATCH_S):
        self.path, self.uri, self.exp_id, self.parent = path, uri, exp_id, parent_run_id
        self.batch_s = batch_s
        self.step_key, self.artifacts = step_key, artifacts
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        existed = os.path.exists(path)
        self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        lines = read_lines(path) if existed else []
        if existed and os.path.getsize(path) and not self._ends_with_newline():
            os.write(self._fd, b"\n")  # a kill cut the last line: it stays unparsable, alone
        self.done = done_count(path)
        self._q: queue.Queue = queue.Queue()
        for op in lines[self.done:]:
            self._q.put(op)
        if not existed:
            self.append({"op": "header", "uri": uri, "exp_id": exp_id, "parent": parent_run_id, "step_key": step_key,
                         "artifacts": f"{artifacts.__module__}:{artifacts.__qualname__}" if artifacts else None})
        self.run_ids: dict[str, str] = {}
        self.created: set[str] = set()  # runs this process created and has not started yet
        self._params_due: dict[str, list] = {}  # run id -> params to send with its next points
        self._old_trials = {op["trial"] for op in lines if op and "trial" in op}  # may have runs already
        self._failed = False  # a call failed: it may have landed, so search before creating
        self.last_step: dict[str, int] = {}
        self.errors: list[str] = []
        self.waiting_since: float | None = None  # set while the tracking store is unreachable
        self._client = None
        self._saved_done = self.done
        self._stop = threading.Event()
        self._wake = threading.Event()  # set by flush: deliver now instead of after batch_s
        self._t = None
        if deliver:
            self._t = threading.Thread(target=self._run, name="reconlab-spool", daemon=True)
            self._t.start()

    # ------------------------------------------------------------------ writing

    def _ends_with_newline(self) -> bool:
        with open(self.path, "rb") as f:
            f.seek(-1, os.SEEK_END)
            return f.read(1) == b"\n"

    def append(self, op: dict) -> None:
        os.write(self._fd, (json.dumps(op, default=str, allow_nan=True) + "\n").encode())
        self._q.put(op)

    def start(self, trial_id: str, name: str, params: dict, trainable: str) -> None:
        self.append({"op": "start", "trial": trial_id, "name": name, "trainable": trainable,
                     "params": {p.key: p.value for p in tracking.params_of(params)}})

    def metrics(self, trial_id: str, step: int, values: dict) -> None:
        self.append({"op": "metrics", "trial": trial_id, "step": int(step), "ts": int(time.time() * 1000),
                     "values": {m.key: m.value for m in tracking.metrics_of(values, step)}})

    def end(self, trial_id: str, status: str, reason: str | None, ref: dict | None = None) -> None:
        self.append({"op": "end", "trial": trial_id, "status": status, "reason": reason, "ref": ref or {}})

    # ---------------------------------------------------------------- delivery

    @property
    def client(self):
        if self._client is None:
            self._client = tracking.client(self.uri)
        return self._client

    def pending(self) -> int:
        return self._q.unfinished_tasks

    def _done_path(self) -> str:
        return self.path + ".done"

    def _save_done(self) -> None:
        if self.done == self._saved_done:
            return
        tmp = self._done_path() + ".tmp"
        with open(tmp, "w") as f:
            f.write(str(self.done))
        os.replace(tmp, self._done_path())
        self._saved_done = self.done

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(self.batch_s)
            self._wake.clear()
            ops = self._take()
            if not ops:
                self._save_done()
                continue
            try:
                if not self._deliver(ops):
                    return  # closing while the store is away: the lines stay for the next run
                self.done += len(ops)
            finally:
                for _ in ops:
                    self._q.task_done()
            self._save_done()

    def _take(self) -> list:
        """Every line queued now, in order (one delivery round)."""
        ops = []
        while True:
            try:
                ops.append(self._q.get_nowait())
            except queue.Empty:
                return ops

    def _deliver(self, ops: list) -> bool:
        """Apply one round of lines, retrying while the store is unreachable;
        False if the spool was closed before they could be delivered. A
        round the store refuses for good is applied line by line, so only the
        offending line is skipped."""
        tries = 0
        while True:
            try:
                self.apply_all(ops)
                if self.waiting_since is not None:
                    tracking.announce(f"tracking store is back after {time.time() - self.waiting_since:.0f}s; "
                                      f"delivering {self.pending()} spooled writes")
                self.waiting_since = None
                return True
            except Exception as e:
                # a call that failed may still have landed, and the round's
                # points may not: ask the store again for each run's last step
                self.last_step.clear()
                self._failed = True
                if not transient(e):
                    if len(ops) > 1:
                        return all(self._deliver([op]) for op in ops)
                    op = ops[0] or {}
                    self.errors.append(f"{op.get('op')} {op.get('trial', '')}: {e}"[:500])
                    log.warning("tracking write skipped: %s", e)
                    return True
                if self.waiting_since is None:
                    self.waiting_since = time.time()
                    tracking.announce(f"tracking store unreachable ({type(e).__name__}); spooling to {self.path}")
                if self._stop.wait(RETRY_WAIT_S[min(tries, len(RETRY_WAIT_S) - 1)]):
                    return False
                tries += 1

    def apply_all(self, ops: list) -> None:
        """Apply lines in order, with the metric points of each run coalesced
        into as few ``log_batch`` calls as MLflow allows, with its params: a
        trial's start and the reports that queued up during one round cost one
        call, not one each. A run's buffered points are sent before its end."""
        from mlflow.entities import Metric

        points: dict[str, list] = {}
        for op in ops:
            if op is None or op["op"] == "header":
                continue
            run_id = self._run_for(op)
            if op["op"] == "metrics":
                step = int(op["step"])
                if step > self._last_step(run_id):
                    points.setdefault(run_id, []).extend(
                        Metric(k, float(v), int(op["ts"]), step) for k, v in op["values"].items())
                    self.last_step[run_id] = step
            else:
                if op["op"] == "end":
                    self._send(run_id, points.pop(run_id, []))
                self.apply(op, run_id)
        for run_id in {*points, *self._params_due}:  # nothing is left for a later round
            self._send(run_id, points.get(run_id, []))

    def _send(self, run_id: str, metrics: list) -> None:
        """The run's params not yet logged and ``metrics``, in as few calls as
        MLflow's limits allow."""
        params = self._params_due.pop(run_id, [])
        try:
            while params or metrics:
                p = params[:MAX_PARAMS_PER_BATCH]
                m = metrics[:MAX_ENTRIES_PER_BATCH - len(p)]
                self.client.log_batch(run_id, metrics=m, params=p)
                params, metrics = params[len(p):], metrics[len(m):]
        finally:
            if params:  # a failed call: what it may not have logged goes again
                self._params_due[run_id] = params

    def apply(self, op: dict, run_id: str) -> None:
        """A ``start`` or ``end`` line of the run ``run_id`` (``apply_all``
        takes the metrics)."""
        kind = op["op"]
        c = self.client
        if kind == "start":
            if run_id in self.created:
                self.created.discard(run_id)  # just created: RUNNING already
            elif c.get_run(run_id).info.status != "RUNNING":
                c.update_run(run_id, status="RUNNING")  # a retried or resumed trial continues its run
        elif kind == "end":
            if self.artifacts is not None and op["status"] == "FINISHED":
                for name, data in self._render(op).items():
                    tracking.log_bytes(c, run_id, data, name)
            if op.get("reason"):
                c.set_tag(run_id, "reconlab.error", str(op["reason"])[:4000])
            c.set_terminated(run_id, status=op["status"])

    def _render(self, op: dict) -> dict[str, bytes]:
        """A finished trial's artifacts; a checkpoint that is gone is a
        warning, never a reason to hold up the spool."""
        try:
            return self.artifacts(op.get("ref") or {})
        except Exception as e:
            self.errors.append(f"artifacts of {op['trial']}: {e}"[:500])
            log.warning("artifacts of trial %s not rendered: %s", op["trial"], e)
            return {}

    def _run_for(self, op: dict) -> str:
        """The trial's run: found, or created. Only a trial this spool held
        lines of when it opened, or any trial after a failed call (which may
        have landed), can have a run already; the others skip the search."""
        tid = op["trial"]
        if tid in self.run_ids:
            return self.run_ids[tid]
        c = self.client
        found = None
        if tid in self._old_trials or self._failed:
            found = tracking.find_runs(c, self.exp_id, {tracking.TAG_TRIAL: tid, tracking.TAG_PARENT: self.parent},
                                       max_results=1)
        if found:
            run_id = found[0].info.run_id
        else:
            run = c.create_run(self.exp_id, run_name=op.get("name") or tid, tags={
                tracking.TAG_PARENT: self.parent, tracking.TAG_TRIAL: tid,
                "reconlab.trainable": op.get("trainable", "")})
            run_id = run.info.run_id
            self.created.add(run_id)  # new, RUNNING and without points: nothing to ask the store
            self.last_step.setdefault(run_id, -1)
        from mlflow.entities import Param

        # sent with the run's first points (again for a found run: its creator
        # may have died before logging them)
        self._params_due[run_id] = [Param(k, v) for k, v in (op.get("params") or {}).items()]
        self.run_ids[tid] = run_id
        return run_id

    def _last_step(self, run_id: str) -> int:
        """The highest step the run holds (asked once per run and process)."""
        if run_id not in self.last_step:
            hist = self.client.get_metric_history(run_id, self.step_key)
            self.last_step[run_id] = max((m.step for m in hist), default=-1)
        return self.last_step[run_id]

    # ------------------------------------------------------------ end of sweep

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until every line is delivered (True) or ``timeout`` passes."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.pending():
            self._wake.set()
            if deadline is not None and time.monotonic() > deadline:
                return False
            time.sleep(0.05)
        self._save_done()
        return True

    def close(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._t is not None:
            self._t.join(timeout=30)
        self._save_done()
        os.close(self._fd)

    def reconcile(self, trials: dict[str, tuple[str, str | None]]) -> dict[str, int]:
        """After a sweep: give every trial Tune knows the status Tune gave it,
        and close any other child run of the sweep (a trial the driver's
        kill erased from Tune's experiment state): tagged, KILLED and deleted,
        so the experiment shows exactly one run per trial. ``trials`` maps
        trial id -> (MLflow status, reason)."""
        c = self.client
        counts = {"closed": 0, "orphans": 0}
        runs = c.search_runs([self.exp_id], f"tags.`{tracking.TAG_PARENT}` = '{self.parent}'", max_results=50000)
        for r in runs:
            tid = r.data.tags.get(tracking.TAG_TRIAL)
            if tid in trials:
                status, reason = trials[tid]
                if r.info.status != status:
                    if reason:
                        c.set_tag(r.info.run_id, "reconlab.error", reason[:4000])
                    c.set_terminated(r.info.run_id, status=status)
                    counts["closed"] += 1
            elif tid:
                c.set_tag(r.info.run_id, TAG_ORPHAN, "trial lost from Tune's experiment state by a driver kill")
                if r.info.status == "RUNNING":
                    c.set_terminated(r.info.run_id, status="KILLED")
                c.delete_run(r.info.run_id)
                counts["orphans"] += 1
        return counts


def sync(path: str, uri: str | None = None, artifacts: Callable[[dict], dict[str, bytes]] | None = None,
         timeout: float | None = None) -> tuple[int, int]:
    """Deliver what a spool still holds (``reconlab sync``). Returns
    (lines delivered, lines left)."""
    if os.path.isdir(path):
        path = os.path.join(path, SPOOL_FILE)
    lines = read_lines(path)
    head = next((op for op in lines if op and op.get("op") == "header"), None)
    if head is None:
        from reconlab.errors import InputError

        raise InputError("not a reconlab spool (no header line)", key="path", value=path)
    if artifacts is None and head.get("artifacts"):
        import importlib

        module, name = head["artifacts"].split(":")
        artifacts = getattr(importlib.import_module(module), name)
    before = max(len(lines) - done_count(path), 0)
    s = Spool(path, uri or head["uri"], head["exp_id"], head["parent"], head["step_key"], artifacts)
    s.flush(timeout)
    left = s.pending()
    s.close()
    return before - left, left


def find_spools(root: str) -> list[str]:
    """Every spool under ``root`` with undelivered lines."""
    out = []
    for d, _, files in os.walk(root):
        if SPOOL_FILE in files:
            p = os.path.join(d, SPOOL_FILE)
            if done_count(p) < len(read_lines(p)):
                out.append(p)
    return sorted(out)


def describe(result: Any) -> dict:
    """The JSON-safe scalars of a Tune result (for an ``end`` line's ``ref``)."""
    return {k: v for k, v in (result or {}).items() if isinstance(v, (str, int, float, bool)) or v is None}
