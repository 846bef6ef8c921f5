"""Shared command-line contract of every job (DESIGN.md) and exit codes:
0 done, 2 bad input (one line, before Ray starts), 1 runtime failure."""

from __future__ import annotations

import argparse
import sys
import traceback
from typing import Callable

from reconlab.errors import InputError

EXIT_OK, EXIT_FAILURE, EXIT_BAD_INPUT = 0, 1, 2


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # argparse exits 2 already; make it one line
        raise InputError(f"{self.prog}: {message}")


def job_parser(prog: str, description: str, default_space: str) -> argparse.ArgumentParser:
    p = _Parser(prog=prog, description=description, allow_abbrev=False)
    p.add_argument("--smoke-test", action="store_true", help="tiny, fast version of the whole job")
    p.add_argument("--tracking-uri", help="MLflow URI (default: $MLFLOW_TRACKING_URI, else SQLite in the storage dir)")
    p.add_argument("--experiment", help="MLflow experiment name")
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


def run_job(main: Callable[[list[str] | None], int], argv: list[str] | None = None) -> int:
    """Call ``main`` and map errors onto the exit-code contract."""
    try:
        return main(argv)
    except InputError as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception:
        traceback.print_exc()
        return EXIT_FAILURE


def main(argv: list[str] | None = None) -> int:
    """``reconlab`` console script: lists the jobs; ``reconlab sync`` delivers
    spooled tracking writes."""
    args = list(sys.argv[1:] if argv is None else argv)
    if args[:1] == ["sync"]:
        return run_job(sync, args[1:])
    print("reconlab jobs (see README):\n"
          "  python jobs/inversion_sweep.py [--smoke-test] ...   network inversion of classifiers (the main job)\n"
          "  python jobs/xor_decryption.py [--smoke-test] ...    XOR decryption with a U-Net (Table I)\n"
          "  python jobs/deep_decoder_sweep.py [--smoke-test] ... deep decoder and deep image prior fits\n"
          "  python jobs/ct_case_study.py [--smoke-test] ...      the CT case study on ASTRA\n"
          "  python jobs/denoise_sweep.py [--smoke-test] ...      Noise2Noise denoisers, noisy vs clean targets, a PGD defence\n"
          "  python jobs/adversarial_sweep.py [--smoke-test] ...  noise, FGSM, one-pixel (DE) on a classifier; DAG, PGD on denoisers\n"
          "reconlab sync [DIR|SPOOL ...]                         deliver what a sweep spooled while MLflow was away")
    return 0


def sync(argv: list[str]) -> int:
    """Deliver every sweep spool under the given directories (default: the
    results directory) to an MLflow store: ``--tracking-uri``, else
    ``$MLFLOW_TRACKING_URI``, else the SQLite store of the storage directory
    the spool lies in. The store a spool's header names is only compared,
    never contacted: a spool written for another store is refused unless
    ``--retarget``."""
    import os

    from reconlab import spool, tracking

    p = _Parser(prog="reconlab sync", description=sync.__doc__, allow_abbrev=False)
    p.add_argument("paths", nargs="*", help="spool files, Tune experiment dirs or storage dirs")
    p.add_argument("--tracking-uri", help="the store to deliver to (default: $MLFLOW_TRACKING_URI, else "
                   "sqlite:///<storage dir>/mlflow.db of each spool)")
    p.add_argument("--retarget", action="store_true",
                   help="deliver a spool written for another store to this one anyway")
    p.add_argument("--timeout", type=float, default=600, help="seconds to keep retrying an unreachable store")
    a = p.parse_args(argv)
    paths = a.paths or [tracking.results_dir()]
    spools = []
    for path in paths:
        if os.path.isfile(path):
            spools.append(path)
        elif os.path.isdir(path):
            spools += spool.find_spools(path)
        else:
            raise InputError("no such file or directory", key="path", value=path)
    left_total = 0
    for s in spools:
        uri = a.tracking_uri or os.environ.get("MLFLOW_TRACKING_URI") or \
            "sqlite:///" + os.path.join(spool.storage_root(s), "mlflow.db")
        tracking.check_tracking_uri(uri)
        delivered, left = spool.sync(s, uri, retarget=a.retarget, timeout=a.timeout)
        left_total += left
        print(f"{s}: {delivered} delivered, {left} left")
    if not spools:
        print("nothing to deliver")
    return EXIT_FAILURE if left_total else EXIT_OK
