"""The ``reconlab`` console script: ``studies`` lists the installed studies,
``run`` runs one by name, ``sync`` delivers spooled tracking writes. Exit
codes as every job's: 0 done, 2 bad input (one line), 1 a runtime failure."""

from __future__ import annotations

import sys

from reconlab.errors import EXIT_BAD_INPUT, EXIT_FAILURE, EXIT_OK, InputError, OneLineParser, run_job

USAGE = """usage:
  reconlab studies                      the installed studies: name, title, the command that reproduces each
  reconlab run STUDY [FLAGS ...]        run an installed study (the same flags as its job; --help lists them)
  reconlab sync [DIR|SPOOL ...]         deliver what a sweep spooled while MLflow was away
"""


def main(argv: list[str] | None = None) -> int:
    """``reconlab`` console script: ``studies``, ``run``, ``sync``."""
    args = list(sys.argv[1:] if argv is None else argv)
    if args[:1] == ["sync"]:
        return run_job(sync, args[1:])
    if args[:1] == ["studies"]:
        return run_job(studies, args[1:])
    if args[:1] == ["run"]:
        return run(args[1:])
    print(USAGE, end="")
    return EXIT_OK if not args or args[0] in ("-h", "--help") else EXIT_BAD_INPUT


def studies(argv: list[str]) -> int:
    """List the installed studies (entry points ``reconlab.studies``)."""
    from reconlab.sweep.study import installed

    OneLineParser(prog="reconlab studies", description=studies.__doc__, allow_abbrev=False).parse_args(argv)
    found = installed()
    width = max((len(n) for n in found), default=0)
    for name, st in found.items():
        print(f"{name:<{width}}  {st.title}\n{'':<{width}}  research: {st.research}\n{'':<{width}}  run: {st.command}")
    if not found:
        print("no studies installed (entry-point group reconlab.studies)")
    return EXIT_OK


def run(argv: list[str]) -> int:
    """``reconlab run STUDY ...``: an installed study by name, as its job runs it."""
    from reconlab.sweep.study import installed, run_study

    if not argv or argv[0].startswith("-"):
        print("error: reconlab run: name a study (`reconlab studies` lists them)", file=sys.stderr)
        return EXIT_BAD_INPUT
    try:
        found = installed()
    except InputError as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_BAD_INPUT
    if argv[0] not in found:
        print(f"error: key 'study' = {argv[0]!r}: not installed (installed: {', '.join(found) or 'none'})",
              file=sys.stderr)
        return EXIT_BAD_INPUT
    return run_study(found[argv[0]], argv[1:], prog=f"reconlab run {argv[0]}")


def sync(argv: list[str]) -> int:
    """Deliver every sweep spool under the given directories (default: the
    results directory) to an MLflow store: ``--tracking-uri``, else
    ``$MLFLOW_TRACKING_URI``, else the SQLite store of the storage directory
    the spool lies in. The store a spool's header names is only compared,
    never contacted: a spool written for another store is refused unless
    ``--retarget``."""
    import os

    from reconlab import spool, tracking

    p = OneLineParser(prog="reconlab sync", description=sync.__doc__, allow_abbrev=False)
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
    incomplete = refused = 0
    for s in spools:  # a spool refused whole (exit 2) does not stop the others
        uri = a.tracking_uri or os.environ.get("MLFLOW_TRACKING_URI") or \
            "sqlite:///" + os.path.join(spool.storage_root(s), "mlflow.db")
        try:
            tracking.check_tracking_uri(uri)
            done = spool.sync(s, uri, retarget=a.retarget, timeout=a.timeout)
        except InputError as e:
            print(f"error: {e}", file=sys.stderr)
            refused += 1
            continue
        incomplete += not done.complete
        print(f"{s}: {done.summary()}")
    if not spools:
        print("nothing to deliver")
    return EXIT_BAD_INPUT if refused else EXIT_FAILURE if incomplete else EXIT_OK
