"""The Ray Tune callback that writes every trial's run through the sweep's
write-ahead spool (``reconlab.spool``)."""

from __future__ import annotations

from typing import Iterable

from reconlab import tracking
from reconlab.spool import spool_at, trial_ref


def trial_callback(spool_path: str, metric_keys: Iterable[str]):
    """A Ray Tune callback: one MLflow child run per trial, every reported
    step, a final status (and artifacts), all through the sweep's write-ahead
    spool (``reconlab.spool``). It holds only the spool's path: Tune pickles
    its callbacks into the experiment and unpickles them on restore, and the
    open spool is looked up in this process."""
    from ray.tune import Callback

    from reconlab.sweep.nodes import node_change

    keys = frozenset(metric_keys)

    class MlflowTrials(Callback):
        def __init__(self):
            self.nodes: dict[str, list[str]] = {}  # the nodes each trial ran on (sweep.nodes)

        @property
        def spool(self):
            return spool_at(spool_path)

        def on_trial_start(self, iteration, trials, trial, **info):
            self.spool.start(trial.trial_id, str(trial), trial.config, trial.trainable_name)

        def on_trial_result(self, iteration, trials, trial, result, **info):
            step = int(result.get("step", result.get("training_iteration", 0)))
            tags = node_change(self.nodes, trial.trial_id, result)
            if tags:
                self.spool.tags(trial.trial_id, tags)
            self.spool.metrics(trial.trial_id, step, {k: v for k, v in result.items() if k in keys})

        def on_trial_complete(self, iteration, trials, trial, **info):
            status, reason = tracking.trial_outcome(trial.last_result, None)
            self.spool.end(trial.trial_id, status, reason, trial_ref(trial))

        def on_trial_error(self, iteration, trials, trial, **info):
            self.spool.end(trial.trial_id, "FAILED", tracking.error_line(trial) or "trial raised an error",
                           trial_ref(trial))

    return MlflowTrials()
