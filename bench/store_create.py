"""Creating a new SQLite MLflow store: MLflow's migrations against reconlab's
schema snapshot (``reconlab.store_schema``), paired in one run.

    python bench/store_create.py [--repeats 7]

Each repeat creates one store each way, alternating which goes first, in new
temporary directories, after both paths are imported and warm; prints the
medians and their ratio (the figure: the machine's speed drifts, the ratio
much less). A job with a new storage directory pays this once.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time


def migrations(d: str) -> float:
    from mlflow.tracking import MlflowClient

    t = time.perf_counter()
    MlflowClient(tracking_uri=f"sqlite:///{d}/mlflow.db").search_experiments(max_results=1)
    return time.perf_counter() - t


def snapshot(d: str) -> float:
    from reconlab import tracking

    t = time.perf_counter()
    tracking.client(f"sqlite:///{d}/mlflow.db").search_experiments(max_results=1)
    return time.perf_counter() - t


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeats", type=int, default=7)
    a = p.parse_args()
    import logging

    logging.getLogger("mlflow").setLevel(logging.WARNING)
    from reconlab import store_schema
    from reconlab.store_schema_sql import REVISION

    if store_schema.head_revision() != REVISION:
        raise SystemExit(f"the installed MLflow is not at the snapshot's revision {REVISION}: nothing to compare")
    with tempfile.TemporaryDirectory() as root:
        n = iter(range(10 ** 6))

        def fresh() -> str:
            d = os.path.join(root, str(next(n)))
            os.makedirs(d)
            return d

        migrations(fresh()), snapshot(fresh())  # imports and first-call costs, not counted
        got = {"migrations": [], "snapshot": []}
        for i in range(a.repeats):
            order = [("migrations", migrations), ("snapshot", snapshot)][::1 if i % 2 == 0 else -1]
            for name, fn in order:
                got[name].append(fn(fresh()))
    m, s = statistics.median(got["migrations"]), statistics.median(got["snapshot"])
    print(f"new SQLite store, median of {a.repeats}: MLflow's migrations {m:.3f} s, snapshot {s:.3f} s; "
          f"snapshot / migrations = {s / m:.3f} ({m / s:.0f}x faster)")


if __name__ == "__main__":
    main()
