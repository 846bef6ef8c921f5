"""Restoring a trial whose checkpoint Tune's saved state names no longer exists.

Tune writes its experiment state to a staging directory and copies it to the
storage path in the background, while ``CheckpointConfig(num_to_keep)``
deletes a trial's older checkpoints at once. A driver killed between the two
leaves a saved state that names a checkpoint already deleted, and on
``Tuner.restore`` the trial fails with "Could not recover from checkpoint as
it does not exist on storage anymore" — a point of the sweep lost to a race
(seen in the driver-kill fault test). ``RestoreFromNewest`` is mixed into
every sweep's trainable (``wrap_function``'s ``__mixins__``): when the named
checkpoint is gone it restores from the newest ``checkpoint_NNNNNN`` left in
the trial's directory (a later state of the same trial: the one the deletion
kept), and when none is left the trial starts over. The trial's own state
(its step) lives in the checkpoint, so it continues where that state stops.
"""

from __future__ import annotations

import posixpath
import re

_CHECKPOINT = re.compile(r"^checkpoint_(\d+)$")


def newest_checkpoint(fs, trial_path: str) -> str | None:
    """The path of the highest-numbered ``checkpoint_NNNNNN`` directory in
    ``trial_path`` on the pyarrow filesystem ``fs``; None when there is none."""
    import pyarrow.fs

    try:
        infos = fs.get_file_info(pyarrow.fs.FileSelector(trial_path, allow_not_found=True))
    except OSError:
        return None
    found = [(int(m.group(1)), i.path) for i in infos
             if i.type == pyarrow.fs.FileType.Directory and (m := _CHECKPOINT.match(posixpath.basename(i.path)))]
    return max(found)[1] if found else None


class RestoreFromNewest:
    """Trainable mixin: restore from the newest checkpoint left in the trial's
    directory when the one Tune asks for was deleted (see the module doc)."""

    def restore(self, checkpoint_path):
        import ray.tune
        from ray.train._internal.checkpoint_manager import _TrainingResult
        from ray.train._internal.storage import _exists_at_fs_path

        if isinstance(checkpoint_path, _TrainingResult):
            ckpt = checkpoint_path.checkpoint
            if not _exists_at_fs_path(ckpt.filesystem, ckpt.path):
                newest = newest_checkpoint(ckpt.filesystem, posixpath.dirname(ckpt.path))
                if newest is None:
                    print(f"reconlab: {posixpath.basename(ckpt.path)} of this trial is gone and no other "
                          f"checkpoint is left; the trial starts over", flush=True)
                    return None
                print(f"reconlab: {posixpath.basename(ckpt.path)} of this trial is gone; restoring from "
                      f"{posixpath.basename(newest)}, the newest left", flush=True)
                checkpoint_path = _TrainingResult(
                    checkpoint=ray.tune.Checkpoint(newest, filesystem=ckpt.filesystem),
                    metrics=checkpoint_path.metrics)
        return super().restore(checkpoint_path)
