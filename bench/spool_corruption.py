"""Corrupt a real sweep's spool at random and let `reconlab sync` deliver it:
it must never end in a traceback (issue 30).

    python bench/spool_corruption.py STORAGE_DIR [--n 25] [--seed 0]   # e.g. after `make run`

STORAGE_DIR is a job's storage directory (its `mlflow.db` and `tune/<sweep>/`).
It is copied to a temporary directory once; each round copies the sweep's
spool afresh, applies 1-4 corruptions (a byte flipped, a line cut, a field
given another JSON value of any type or size, a line repeated, two lines
swapped), marks it undelivered and runs `reconlab sync` on it as a user
would, against the copied store (`--retarget`: a copy of the store the spool
was written for; redelivering is idempotent). Prints each
round's exit code and summary, and the number of tracebacks (the figure:
0). The property-based test is tests/test_spool.py -k corrupted.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile

VALUES = [None, True, 0, -1, 2 ** 63, 10 ** 30, 1e308, "", "x" * 6000, [], [1, {"a": 2}], {}, {"op": "end"}]


def corrupt(lines: list[bytes], rng: random.Random) -> list[bytes]:
    head, body = lines[:1], list(lines[1:])
    for _ in range(rng.randint(1, 4)):
        i, kind = rng.randrange(len(body)), rng.choice(["flip", "cut", "retype", "repeat", "swap"])
        if kind == "flip":
            b = bytearray(body[i])
            b[rng.randrange(len(b))] ^= rng.randint(1, 255)
            body[i] = bytes(b)
        elif kind == "cut":
            body[i] = body[i][:rng.randrange(len(body[i]))] + b"\n"
        elif kind == "retype":
            try:
                op = json.loads(body[i])
                op[rng.choice(sorted(op) + ["op"])] = rng.choice(VALUES)
                body[i] = json.dumps(op).encode() + b"\n"
            except (ValueError, TypeError):
                pass
        elif kind == "repeat":
            body.insert(i, body[i])
        else:
            j = rng.randrange(len(body))
            body[i], body[j] = body[j], body[i]
    return head + body


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("storage")
    p.add_argument("--n", type=int, default=25)
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args()
    rng = random.Random(a.seed)
    with tempfile.TemporaryDirectory() as tmp:
        store = os.path.join(tmp, "store")
        shutil.copytree(a.storage, store, ignore=shutil.ignore_patterns("*.lock"))
        (spool,) = glob.glob(os.path.join(store, "tune", "*", "mlflow_spool.jsonl"))
        with open(spool, "rb") as f:
            lines = f.read().splitlines(keepends=True)
        tracebacks = 0
        for i in range(a.n):
            with open(spool, "wb") as f:
                f.write(b"".join(corrupt(lines, rng)))
            with open(spool + ".done", "w") as f:
                f.write("0")
            r = subprocess.run([sys.executable, "-c", "import sys; from reconlab.cli import main; sys.exit(main())",
                                "sync", spool, "--tracking-uri", f"sqlite:///{store}/mlflow.db", "--retarget", "--timeout", "60"],
                               capture_output=True, text=True, timeout=600)
            tb = "Traceback" in r.stderr
            tracebacks += tb
            said = (r.stdout.strip().splitlines() or r.stderr.strip().splitlines() or [""])[-1]
            print(f"round {i + 1}: exit {r.returncode}{' TRACEBACK' if tb else ''}: {said.split(': ', 1)[-1][:160]}")
    print(f"{a.n} corrupted copies of a {len(lines)}-line spool: {tracebacks} tracebacks")
    return 1 if tracebacks else 0


if __name__ == "__main__":
    sys.exit(main())
