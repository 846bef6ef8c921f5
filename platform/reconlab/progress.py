"""What a sweep shows while it runs: one live line, not Tune's trial table.

On a terminal: a progress bar (tqdm) over the sweep's trials with how many
run, failed and were stopped early, the best metric so far, the elapsed time
and an ETA. Elsewhere (CI, ``ray job logs``, a file): a plain line when the
sweep starts, then at most one a minute, and one at the end. The counts are
read from Tune's trial list at every step, so a resumed sweep counts the
trials its earlier drivers finished.
"""

from __future__ import annotations

import math
import sys
import time

PLAIN_EVERY_S = 60.0


def counts(trials, metric: str, mode: str) -> dict:
    """Trials done / running / failed / stopped early / pending, and the best
    value of ``metric`` any trial reported (None before one did). A trial
    the scheduler ended before it finished carries ``stopped_early``
    (``reconlab.sweep.runner.marking_asha``)."""
    c = {"done": 0, "running": 0, "failed": 0, "stopped": 0, "pending": 0, "best": None}
    for t in trials:
        last = t.last_result or {}
        if t.status == "TERMINATED":
            c["stopped" if getattr(t, "stopped_early", False) else "done"] += 1
        elif t.status == "ERROR":
            c["failed"] += 1
        elif t.status == "RUNNING":
            c["running"] += 1
        else:
            c["pending"] += 1
        v = last.get(metric)
        if isinstance(v, (int, float)) and math.isfinite(v):
            if c["best"] is None or (v > c["best"] if mode == "max" else v < c["best"]):
                c["best"] = float(v)
    return c


def clock(seconds: float) -> str:
    s = int(max(seconds, 0))
    return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}" if s >= 3600 else f"{s // 60}:{s % 60:02d}"


def summary(c: dict, metric: str) -> str:
    best = "–" if c["best"] is None else f"{c['best']:.4g}"
    return f"{c['running']} running, {c['failed']} failed, {c['stopped']} stopped early; best {metric} {best}"


def ended(c: dict) -> int:
    """Trials that will report no more: done, failed or stopped early."""
    return c["done"] + c["failed"] + c["stopped"]


def plain_line(c: dict, total: int, metric: str, elapsed: float) -> str:
    ended_ = ended(c)
    eta = f", ETA {clock(elapsed / ended_ * (total - ended_))}" if 0 < ended_ < total else ""
    return f"[reconlab] trials {ended_}/{total} ended ({summary(c, metric)}), {clock(elapsed)} elapsed{eta}"


def progress_callback(total: int, metric: str, mode: str, *, tty: bool | None = None,
                      every_s: float = PLAIN_EVERY_S):
    """A Ray Tune callback that shows the sweep's progress on stderr (see the
    module doc). ``tty``: force the terminal or the plain form."""
    from ray.tune import Callback

    class Progress(Callback):
        def __init__(self):
            self.start = self.last = None
            self.bar = None

        def __getstate__(self):  # Tune pickles its callbacks with the experiment
            return {**self.__dict__, "bar": None}

        def _live(self) -> bool:
            return sys.stderr.isatty() if tty is None else tty

        def on_step_begin(self, iteration, trials, **info):
            # called at every turn of Tune's loop: count the trials only when a line is due
            now = time.monotonic()
            if self.start is None:
                self.start, self.last = now, None
            live = self._live()
            if self.last is not None and now - self.last < (0.5 if live else every_s):
                return
            c, self.last = counts(trials, metric, mode), now
            if not live:
                print(plain_line(c, total, metric, now - self.start), file=sys.stderr, flush=True)
                return
            if self.bar is None:
                from tqdm import tqdm

                self.bar = tqdm(total=total, desc="trials", unit="trial", file=sys.stderr, dynamic_ncols=True)
            self.bar.n = ended(c)
            self.bar.set_postfix_str(summary(c, metric), refresh=True)

        def on_experiment_end(self, trials, **info):
            c = counts(trials, metric, mode)
            if self.bar is not None:
                self.bar.n = ended(c)
                self.bar.set_postfix_str(summary(c, metric), refresh=True)
                self.bar.close()
                self.bar = None
            else:
                print(plain_line(c, total, metric, time.monotonic() - (self.start or time.monotonic())),
                      file=sys.stderr, flush=True)

    return Progress()


class EpochBar:
    """On a terminal, a progress bar over a Ray Train run's epochs, read from
    the MLflow run its report callback writes to (the callback itself runs on
    the Train controller, another process): a context manager around the
    fit. Elsewhere it does nothing; the job's start and end lines suffice."""

    def __init__(self, client, run_id: str, total: int | None, desc: str, *, tty: bool | None = None,
                 every_s: float = 1.0):
        self.client, self.run_id, self.total, self.desc, self.every_s = client, run_id, total, desc, every_s
        self.live = (sys.stderr.isatty() if tty is None else tty) and bool(total)
        self._stop = self._thread = self.bar = None

    def __enter__(self):
        if self.live:
            import threading

            from tqdm import tqdm

            self.bar = tqdm(total=self.total, desc=self.desc, unit="epoch", file=sys.stderr, dynamic_ncols=True)
            self._stop = threading.Event()
            self._thread = threading.Thread(target=self._poll, name="reconlab-epochs", daemon=True)
            self._thread.start()
        return self

    def _epochs(self) -> int:
        m = self.client.get_run(self.run_id).data.metrics
        return int(m.get("epoch", -1)) + 1

    def _poll(self):
        while not self._stop.wait(self.every_s):
            try:
                done = self._epochs()
            except Exception:  # the store is busy or away: the bar waits
                continue
            if done > self.bar.n:
                self.bar.update(min(done, self.total) - self.bar.n)

    def __exit__(self, *exc):
        if self.live:
            self._stop.set()
            self._thread.join(timeout=5)
            self.bar.close()
        return False
