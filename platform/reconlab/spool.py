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

Line format: ``{"op": "header"|"start"|"metrics"|"end"|"parent_log"|"parent_artifact"|"parent_end", ...}``;
see ``Spool``. The sweep's parent run is written through the spool too
(``ParentLog``), so a store that is away at the end of a sweep leaves nothing
RUNNING that ``reconlab sync`` cannot finish.

A spool file is data, never code: it names no code at all (a finished
trial's files are written beside it, under ``trial_files/``, by the driver
when the trial ends, and its ``end`` line lists them), every line is checked
before it is applied, the files it refers to must lie under the sweep's
storage directory, and ``reconlab sync`` delivers to the store the user names, never
to one a spool names. One driver at a time holds a spool (``SpoolLock``, an
exclusive ``flock``): a second one stops with exit 2 naming the holder's pid.

Durability: each line reaches the OS in whole (``os.write`` looped over short
writes) before the callback returns, which survives a SIGKILL of the driver;
a trial's end and the parent's end are also ``fdatasync``ed, so those survive
a power cut too. The other lines of a power cut may be lost.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import queue
import re
import tempfile
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable

from reconlab import tracking
from reconlab.errors import InputError

log = logging.getLogger(__name__)

SPOOL_FILE = "mlflow_spool.jsonl"
PARENT_FILES = "parent_artifacts"  # beside the spool: the bytes of the parent's spooled artifacts
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


# Errors no retry can cure: a value the client cannot even send
_PERMANENT = (TypeError, KeyError, AttributeError, ArithmeticError, RecursionError, UnicodeError)


def transient(e: Exception) -> bool:
    """Whether a failed write may succeed later (a store away, busy or
    overloaded) rather than never (a refusal, a value that cannot be sent)."""
    from mlflow.exceptions import MlflowException

    if isinstance(e, MlflowException):
        return e.error_code in TRANSIENT
    return not isinstance(e, _PERMANENT)


# ------------------------------------------------------------ what a line may say


_ARTIFACT_NAME = re.compile(r"^[A-Za-z0-9_.-]+(/[A-Za-z0-9_.-]+)*$")
_PARENT_FILE = re.compile(rf"^{PARENT_FILES}/[0-9]+\.bin$")
TRIAL_FILES = "trial_files"  # beside the spool: <trial id>/<artifact name>, written when a trial ends
_TRIAL_DIR = re.compile(r"^[A-Za-z0-9_.-]{1,128}$")


def artifact_name_ok(name) -> bool:
    return isinstance(name, str) and bool(_ARTIFACT_NAME.match(name)) and ".." not in name.split("/")


def _files_ok(files) -> bool:
    """An ``end`` line's files: {artifact name: file beside the spool under TRIAL_FILES}."""
    return isinstance(files, dict) and all(
        artifact_name_ok(k) and isinstance(v, str) and v.startswith(TRIAL_FILES + "/") and artifact_name_ok(v)
        for k, v in files.items())


INT64 = 2 ** 63 - 1  # steps and time stamps must fit the store's integer columns


def _int64(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and -INT64 <= v <= INT64


def _number(v) -> bool:
    """A metric value MLflow stores as a double (an int beyond it would raise)."""
    return (isinstance(v, float) or isinstance(v, int)) and (isinstance(v, float) or abs(v) < 1e308)


def _scalars(d, values=(str, int, float, bool, type(None))) -> bool:
    ok = values if callable(values) else (lambda v: isinstance(v, values))
    return isinstance(d, dict) and all(isinstance(k, str) and ok(v) for k, v in d.items())


def check_line(op) -> str | None:
    """What is wrong with a spool line read from disk, or None when it can be
    applied (the right op, keys and types; a ``ref`` that is a dict). Any JSON
    value may reach here, of any type or size: nothing is used before it is
    checked."""
    if not isinstance(op, dict):
        return "not an object"
    kind = op.get("op")
    if not isinstance(kind, str):
        return f"an op that is not a string ({type(kind).__name__})"
    num = _number
    trial = isinstance(op.get("trial"), str)
    ok = {
        "header": lambda: True,
        "start": lambda: (trial and _scalars(op.get("params") or {}, (str,))
                          and isinstance(op.get("name", ""), (str, type(None)))
                          and isinstance(op.get("trainable", ""), (str, type(None)))),
        "metrics": lambda: (trial and _int64(op.get("step")) and _int64(op.get("ts"))
                            and _scalars(op.get("values"), num)),
        "tags": lambda: trial and _scalars(op.get("tags"), (str,)) and bool(op["tags"]),
        "end": lambda: (trial and op.get("status") in ("FINISHED", "FAILED", "KILLED")
                        and isinstance(op.get("ref", {}), dict) and isinstance(op.get("reason"), (str, type(None)))
                        and _files_ok(op.get("files", {}))),
        "parent_log": lambda: (_scalars(op.get("params") or {}, (str,)) and _scalars(op.get("metrics") or {}, num)
                               and _int64(op.get("ts"))),
        "parent_artifact": lambda: (artifact_name_ok(op.get("name")) and isinstance(op.get("file"), str)
                                    and bool(_PARENT_FILE.match(op["file"]))),
        "parent_end": lambda: op.get("status") in ("FINISHED", "FAILED", "KILLED"),
    }.get(kind)
    if ok is None:
        return f"unknown op {kind[:40]!r}"
    return None if ok() else f"malformed {kind} line"


def storage_root(spool_path: str) -> str:
    """The storage directory a spool belongs to: the parent of the ``tune``
    directory it lies in (``<storage>/tune/<sweep>/mlflow_spool.jsonl``)."""
    d = os.path.dirname(os.path.abspath(spool_path))
    probe = d
    while os.path.dirname(probe) != probe:
        if os.path.basename(probe) == "tune":
            return os.path.dirname(probe)
        probe = os.path.dirname(probe)
    return d


class SpoolLock:
    """An exclusive ``flock`` on ``<spool>.lock`` holding the owner's pid: one
    driver (or ``reconlab sync``) per spool. Released when closed or when the
    process dies, SIGKILL included."""

    def __init__(self, spool_path: str):
        self.path = spool_path + ".lock"
        os.makedirs(os.path.dirname(os.path.abspath(self.path)), exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 32).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise InputError(f"the sweep's spool is held by another driver or sync (pid {holder}); wait for it to "
                             "end, or stop it", key="spool", value=spool_path) from None
        os.ftruncate(fd, 0)
        _write_all(fd, f"{os.getpid()}\n".encode())
        self._fd: int | None = fd

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the only descriptor drops the lock
            self._fd = None


def _write_all(fd: int, data: bytes) -> None:
    """``os.write`` until every byte is written (a write may be short)."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def _write_synced(path: str, data: bytes) -> None:
    """A file written in whole and on the disk (its directory made), owner-only."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        _write_all(fd, data)
        os.fdatasync(fd)
    finally:
        os.close(fd)


def read_lines(path: str) -> list[dict | None]:
    """Every line of a spool; ``None`` for one a kill cut short."""
    out: list[dict | None] = []
    with open(path, "rb") as f:
        for raw in f:
            try:
                op = json.loads(raw)
            except ValueError:
                op = None
            if op is not None and check_line(op):
                log.warning("spool %s: line %d skipped (%s)", path, len(out) + 1, check_line(op))
                op = None
            out.append(op)
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

    ``files`` (the study's ``trial_files``, a function of this process, never
    named on disk) turns a finished trial's ``ref`` (checkpoint path, config,
    last result) into {artifact name: bytes}; ``end`` writes them under
    ``trial_files/<trial id>/`` beside the spool before the line that lists
    them, so a replay after a crash, or ``reconlab sync``, only uploads files.
    ``lock``: the ``SpoolLock`` the caller already holds (else one is taken
    here; either way ``close`` releases it).
    """

    def __init__(self, path: str, uri: str, exp_id: str, parent_run_id: str, step_key: str,
                 files: Callable[[dict], dict[str, bytes]] | None = None, deliver: bool = True,
                 batch_s: float = BATCH_S, lock: SpoolLock | None = None):
        self.path, self.uri, self.exp_id, self.parent = path, uri, exp_id, parent_run_id
        self.batch_s = batch_s
        self.step_key, self.files = step_key, files
        self.root = storage_root(path)  # files a line refers to must lie under it
        self._lock = lock or SpoolLock(path)
        existed = os.path.exists(path)
        self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        lines = read_lines(path) if existed else []
        if existed and os.path.getsize(path) and not self._ends_with_newline():
            _write_all(self._fd, b"\n")  # a kill cut the last line: it stays unparsable, alone
        self.done = done_count(path)
        self._q: queue.Queue = queue.Queue()
        for op in lines[self.done:]:
            self._q.put(op)
        if not existed:  # the URI for a later `reconlab sync` to compare with, credentials redacted
            self.append({"op": "header", "uri": tracking.redact(uri), "exp_id": exp_id, "parent": parent_run_id,
                         "step_key": step_key})
        self.run_ids: dict[str, str] = {}
        self.created: set[str] = set()  # runs this process created and has not started yet
        self._params_due: dict[str, list] = {}  # run id -> params to send with its next points
        self._params_sent: set[str] = set()  # runs whose params this process has logged
        self._old_trials = {op["trial"] for op in lines if op and isinstance(op.get("trial"), str)}  # may have runs
        self._failed = False  # a call failed: it may have landed, so search before creating
        self.last_step: dict[str, int] = {}
        self.errors: list[str] = []
        self.waiting_since: float | None = None  # set while the tracking store is unreachable
        self._client = None
        self._parent_info: tuple[dict, list] | None = None  # see _from_parent
        self._saved_done = self.done
        self._done_lock = threading.Lock()
        self._parent_files = len([f for f in os.listdir(self._parent_dir())] if os.path.isdir(self._parent_dir())
                                 else [])
        self._stop = threading.Event()
        self._wake = threading.Event()  # set by flush: deliver now instead of after batch_s
        self._t = None
        if deliver:
            self.start_delivery()

    def start_delivery(self) -> None:
        """Start the background thread that delivers the lines."""
        if self._t is None:
            self._t = threading.Thread(target=self._run, name="reconlab-spool", daemon=True)
            self._t.start()

    # ------------------------------------------------------------------ writing

    def _ends_with_newline(self) -> bool:
        with open(self.path, "rb") as f:
            f.seek(-1, os.SEEK_END)
            return f.read(1) == b"\n"

    def append(self, op: dict, sync: bool = False) -> None:
        """Write the line in whole (``sync``: also to the disk) and queue it."""
        _write_all(self._fd, (json.dumps(op, default=str, allow_nan=True) + "\n").encode())
        if sync:
            os.fdatasync(self._fd)
        self._q.put(op)

    def start(self, trial_id: str, name: str, params: dict, trainable: str) -> None:
        self.append({"op": "start", "trial": trial_id, "name": name, "trainable": trainable,
                     "params": {p.key: p.value for p in tracking.params_of(params)}})

    def metrics(self, trial_id: str, step: int, values: dict) -> None:
        self.append({"op": "metrics", "trial": trial_id, "step": int(step), "ts": int(time.time() * 1000),
                     "values": {m.key: m.value for m in tracking.metrics_of(values, step)}})

    def tags(self, trial_id: str, tags: dict[str, str]) -> None:
        self.append({"op": "tags", "trial": trial_id, "tags": tags})

    def end(self, trial_id: str, status: str, reason: str | None, ref: dict | None = None) -> None:
        """A trial's final status; a finished trial's files are written first
        and the line lists them."""
        op = {"op": "end", "trial": trial_id, "status": status, "reason": reason, "ref": ref or {}}
        if self.files is not None and status == "FINISHED":
            op["files"] = self._write_trial_files(trial_id, op["ref"])
        self.append(op, sync=True)

    def _dir(self) -> str:
        return os.path.dirname(os.path.abspath(self.path))

    def _write_trial_files(self, trial_id: str, ref: dict) -> dict[str, str]:
        """Render a finished trial's files and write them beside the spool:
        {artifact name: path relative to the spool's directory}. A checkpoint
        that is gone, or a renderer that fails, is a warning, never a reason
        to hold up the sweep."""
        try:
            if not _TRIAL_DIR.fullmatch(trial_id):
                raise ValueError(f"trial id {trial_id!r} cannot name a directory")
            files = self.files(ref)
            bad = [n for n in files if not artifact_name_ok(n)]
            if bad:
                raise ValueError(f"bad artifact name {bad[0]!r}")
        except Exception as e:
            self.errors.append(f"files of {trial_id}: {e}"[:500])
            log.warning("files of trial %s not written: %s", trial_id, e)
            return {}
        out = {}
        for name, data in files.items():
            out[name] = f"{TRIAL_FILES}/{trial_id}/{name}"
            _write_synced(os.path.join(self._dir(), out[name]), data)
        return out

    # the sweep's parent run (see ParentLog)

    def _parent_dir(self) -> str:
        return os.path.join(self._dir(), PARENT_FILES)

    def parent_log(self, params: dict[str, str] | None = None, metrics: dict[str, float] | None = None) -> None:
        self.append({"op": "parent_log", "params": params or {}, "metrics": metrics or {},
                     "ts": int(time.time() * 1000)})

    def parent_artifact(self, name: str, data: bytes) -> None:
        """The bytes go to a numbered file beside the spool (on disk before the
        line that names it), the line names the file and the artifact."""
        if not artifact_name_ok(name):
            raise ValueError(f"bad artifact name {name!r}")
        rel = f"{PARENT_FILES}/{self._parent_files}.bin"
        self._parent_files += 1
        _write_synced(os.path.join(self._dir(), rel), data)
        self.append({"op": "parent_artifact", "name": name, "file": rel})

    def parent_end(self, status: str, reason: str | None = None) -> None:
        self.append({"op": "parent_end", "status": status, "reason": reason}, sync=True)

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
        """Atomically replace ``<spool>.done`` (a unique temp file per write:
        the delivery thread and the driver may both save)."""
        with self._done_lock:
            done = self.done
            if done == self._saved_done:
                return
            fd, tmp = tempfile.mkstemp(prefix=os.path.basename(self._done_path()) + ".",
                                       dir=os.path.dirname(os.path.abspath(self.path)))
            try:
                _write_all(fd, str(done).encode())
            finally:
                os.close(fd)
            os.replace(tmp, self._done_path())
            self._saved_done = done

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
                    if len(ops) > 1:  # each start line queues its run's params again
                        self._params_due.clear()
                        return all(self._deliver([op]) for op in ops)
                    self._refused(ops[0] or {}, e)
                    return True
                if self.waiting_since is None:
                    self.waiting_since = time.time()
                    tracking.announce(f"tracking store unreachable ({type(e).__name__}); spooling to {self.path}")
                if self._stop.wait(RETRY_WAIT_S[min(tries, len(RETRY_WAIT_S) - 1)]):
                    return False
                tries += 1

    def _refused(self, op: dict, e: Exception) -> None:
        """A line the store refuses for good: counted in ``errors`` (the
        first one is logged; the rest go in the summary of ``sync`` and the
        job). The run's params go with the refused line: sent again with
        every later line, they would sink those too."""
        self._params_due.pop(self.run_ids.get(op.get("trial")), None)
        self.errors.append(f"{op.get('op')} {op.get('trial', '')}: {type(e).__name__}: {e}"[:500])
        (log.warning if len(self.errors) == 1 else log.debug)("tracking write refused: %s", self.errors[-1])

    def apply_all(self, ops: list) -> None:
        """Apply lines in order, with the metric points of each run coalesced
        into as few ``log_batch`` calls as MLflow allows, with its params: a
        trial's start and the reports that queued up during one round cost one
        call, not one each. A run's buffered points are sent before its end."""
        from mlflow.entities import Metric, Param

        points: dict[str, list] = {}
        for op in ops:
            if op is None or op["op"] == "header":
                continue
            if op["op"].startswith("parent_"):
                self.apply_parent(op)
                continue
            run_id = self._run_for(op)
            if op["op"] == "start" and run_id not in self._params_sent:
                # sent with the run's next points (again for a found run: its
                # creator may have died before logging them)
                self._params_due[run_id] = [Param(k, v) for k, v in (op.get("params") or {}).items()]
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
            self._params_sent.add(run_id)
        finally:
            if params:  # a failed call: what it may not have logged goes again
                self._params_due[run_id] = params

    def apply(self, op: dict, run_id: str) -> None:
        """A ``start``, ``tags`` or ``end`` line of the run ``run_id``
        (``apply_all`` takes the metrics)."""
        kind = op["op"]
        c = self.client
        if kind == "tags":
            from mlflow.entities import RunTag

            c.log_batch(run_id, tags=[RunTag(k, v) for k, v in op["tags"].items()])
            return
        if kind == "start":
            if run_id in self.created:
                self.created.discard(run_id)  # just created: RUNNING already
            elif c.get_run(run_id).info.status != "RUNNING":
                c.update_run(run_id, status="RUNNING")  # a retried or resumed trial continues its run
        elif kind == "end":
            for name, rel in (op.get("files") or {}).items():
                data = self._read_file(rel, f"file {name} of trial {op['trial']}")
                if data is not None:
                    tracking.log_bytes(c, run_id, data, name)
            if op.get("reason"):
                c.set_tag(run_id, "reconlab.error", str(op["reason"])[:4000])
            c.set_terminated(run_id, status=op["status"])

    def apply_parent(self, op: dict) -> None:
        """A line of the sweep's parent run (idempotent: the same params, the
        same metric points with their time stamps, the same files)."""
        from mlflow.entities import Metric, Param

        c, kind = self.client, op["op"]
        if kind == "parent_log":
            params = [Param(k, v) for k, v in op["params"].items()]
            metrics = [Metric(k, float(v), op["ts"], 0) for k, v in op["metrics"].items()]
            for i in range(0, max(len(params), 1), MAX_PARAMS_PER_BATCH):
                c.log_batch(self.parent, params=params[i:i + MAX_PARAMS_PER_BATCH],
                            metrics=metrics if i == 0 else [])
        elif kind == "parent_artifact":
            data = self._read_file(op["file"], f"parent artifact {op['name']}")
            if data is not None:
                tracking.log_bytes(c, self.parent, data, op["name"])
        elif kind == "parent_end":
            if op.get("reason"):
                c.set_tag(self.parent, "reconlab.error", str(op["reason"])[:4000])
            c.set_terminated(self.parent, status=op["status"])

    def _read_file(self, rel: str, what: str) -> bytes | None:
        """The bytes of a file a line names, relative to the spool's
        directory; it must lie under the storage directory (links resolved).
        One that is gone or outside is counted in ``errors`` and skipped."""
        try:
            path = os.path.join(self._dir(), rel)
            if not tracking.is_under(path, self.root):
                raise ValueError(f"path outside the storage directory {self.root}: {rel}")
            with open(path, "rb") as f:
                return f.read()
        except (OSError, ValueError) as e:
            self.errors.append(f"{what}: {e}"[:500])
            log.warning("%s not uploaded: %s", what, e)
            return None

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
            source, datasets = self._from_parent()
            run = c.create_run(self.exp_id, run_name=op.get("name") or tid, tags={
                **source, tracking.TAG_PARENT: self.parent, tracking.TAG_TRIAL: tid,
                "reconlab.trainable": op.get("trainable", "")})
            run_id = run.info.run_id
            if datasets:
                c.log_inputs(run_id, datasets=datasets)
            self.created.add(run_id)  # new, RUNNING and without points: nothing to ask the store
            self.last_step.setdefault(run_id, -1)
        self.run_ids[tid] = run_id
        return run_id

    def _from_parent(self) -> tuple[dict, list]:
        """The source tags (job, git commit) and dataset inputs of the sweep's
        run, which every trial run repeats: asked once per process."""
        if self._parent_info is None:
            p = self.client.get_run(self.parent)
            self._parent_info = ({k: v for k, v in p.data.tags.items() if k in tracking.SOURCE_TAGS},
                                 list(p.inputs.dataset_inputs) if p.inputs else [])
        return self._parent_info

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
        self._lock.release()

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


@dataclass
class Synced:
    """What one ``sync`` did with a spool's undelivered lines: ``delivered``,
    ``left`` (the store stayed away), ``refused`` (the store refused them for
    good, or a file they name is gone: one entry each) and ``unreadable``
    (not JSON, or not a valid line: skipped). Only ``delivered`` reached the
    store."""

    delivered: int
    left: int
    refused: list[str]
    unreadable: int

    @property
    def complete(self) -> bool:
        return not (self.left or self.refused or self.unreadable)

    def summary(self) -> str:
        out = f"{self.delivered} delivered, {self.left} left"
        if self.unreadable:
            out += f", {self.unreadable} unreadable line(s) skipped"
        if self.refused:
            out += f", {len(self.refused)} refused by the store (first: {self.refused[0]})"
        return out


def _check_sweep_run(s: "Spool", path: str) -> None:
    """The store must hold the sweep's run in the sweep's experiment, or
    nothing the spool says can land: stop (exit 2) before delivering or
    marking anything. A store that does not answer is left to the delivery
    loop, which waits for it."""
    from mlflow.exceptions import MlflowException

    try:
        run = s.client.get_run(s.parent)
    except MlflowException as e:
        if e.error_code != "RESOURCE_DOES_NOT_EXIST":
            return
        run = None
    if run is None or run.info.experiment_id != s.exp_id:
        raise InputError(f"the store has no run {s.parent} in experiment {s.exp_id} (the sweep's run), so nothing in "
                         "this spool can be delivered there; deliver it to the store it was written for (or a copy "
                         "of it)", key="path", value=path)


def sync(path: str, uri: str, *, retarget: bool = False, timeout: float | None = None) -> Synced:
    """Deliver what a spool still holds to the store ``uri`` (``reconlab
    sync``). The store the spool's header names is never contacted: it is
    only compared with ``uri``, and a spool written for another store is
    refused unless ``retarget``. Either way the store must hold the sweep's
    run (``_check_sweep_run``): a spool is never marked delivered into a
    store that lacks it."""
    if os.path.isdir(path):
        path = os.path.join(path, SPOOL_FILE)
    lines = read_lines(path)
    head = next((op for op in lines if op and op.get("op") == "header"), None)
    if head is None:
        raise InputError("not a reconlab spool (no header line)", key="path", value=path)
    for key in ("exp_id", "parent", "step_key"):
        if not isinstance(head.get(key), str):
            raise InputError(f"spool header has no valid '{key}'", key="path", value=path)
    if head.get("uri") != tracking.redact(uri) and not retarget:
        raise InputError(f"the spool was written for the store {head.get('uri')!r}, not {tracking.redact(uri)!r}; "
                         "pass that store as --tracking-uri, or --retarget to deliver here anyway",
                         key="path", value=path)
    done = min(done_count(path), len(lines))
    unreadable = sum(op is None for op in lines[done:])
    s = Spool(path, uri, head["exp_id"], head["parent"], head["step_key"], deliver=False)
    try:
        _check_sweep_run(s, path)
    except BaseException:
        s.close()
        raise
    s.start_delivery()
    s.flush(timeout)
    left = s.pending()
    s.close()
    return Synced(len(lines) - done - left - unreadable - len(s.errors), left, list(s.errors), unreadable)


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


# ------------------------------------------------------------ the sweep's side

class ParentLog:
    """The sweep's parent run, written through the spool: the job's summary
    tables, best params, figures and final status wait on disk like the
    trials' lines when the store is away."""

    def __init__(self, spool: Spool):
        self.spool = spool
        self.ended = False

    def log_batch(self, params: dict | None = None, metrics: dict | None = None) -> None:
        self.spool.parent_log({p.key: p.value for p in tracking.params_of(params or {})},
                              {m.key: m.value for m in tracking.metrics_of(metrics or {}, 0)})

    def log_text(self, text: str, name: str) -> None:
        self.spool.parent_artifact(name, text.encode())

    def log_bytes(self, data: bytes, name: str) -> None:
        self.spool.parent_artifact(name, data)

    def set_terminated(self, status: str, reason: str | None = None) -> None:
        self.spool.parent_end(status, reason)
        self.ended = True


_SPOOLS: dict[str, Any] = {}  # spool path -> the driver's open Spool


def register_spool(spool) -> None:
    _SPOOLS[spool.path] = spool


def spool_at(path: str):
    """The open spool registered under ``path`` (a function, so that pickled
    callbacks refer to this module instead of carrying the registry)."""
    return _SPOOLS[path]


def trial_ref(trial) -> dict:
    """What a trial's ``end`` line records, and its files are rendered from:
    its config, last result (scalars) and checkpoint path."""
    cp = trial.checkpoint
    return {"config": describe(trial.config), "last_result": describe(trial.last_result),
            "checkpoint": cp.path if cp is not None else None}
