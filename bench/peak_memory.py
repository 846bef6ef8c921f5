"""Peak memory of a command and every process it starts (the local Ray
runtime's GCS, raylet, workers...), sampled twice a second.

    python bench/peak_memory.py -- python jobs/inversion_sweep.py --storage-path /tmp/x

Prints the peak of the summed PSS (proportional set size: a page shared by n
processes counts 1/n in each, so shared libraries such as torch's are counted
once) and, beside it, the command's own peak RSS. Goal for `make run`: <= 4 GB.
"""

import os
import subprocess
import sys
import time


def tree(root: int) -> list[int]:
    """``root`` and its descendants, from /proc (Linux)."""
    children: dict[int, list[int]] = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open(f"/proc/{d}/stat") as f:
                    ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(d))
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo += children.get(pid, [])
    return out


def pss(pid: int) -> int:
    """Proportional set size in bytes; 0 for a process that has gone."""
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Pss:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def main(argv: list[str]) -> int:
    if "--" not in argv or argv.index("--") == len(argv) - 1:
        print("usage: python bench/peak_memory.py -- COMMAND [ARGS...]", file=sys.stderr)
        return 2
    cmd = argv[argv.index("--") + 1:]
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd)
    peak_total = peak_root = peak_n = 0
    while proc.poll() is None:
        pids = tree(proc.pid)
        peak_total = max(peak_total, sum(pss(p) for p in pids))
        peak_root = max(peak_root, max(pss(p) for p in pids[:2]))  # the command (or make's child)
        peak_n = max(peak_n, len(pids))
        time.sleep(0.5)
    wall = time.perf_counter() - t0
    gb = 1 << 30
    print(f"exit {proc.returncode} after {wall:.0f} s")
    print(f"peak memory, whole process tree (PSS): {peak_total / gb:5.2f} GB  (up to {peak_n} processes; goal <= 4 GB)")
    print(f"peak memory, the command alone (PSS) : {peak_root / gb:5.2f} GB  (or, under make, its child)")
    return proc.returncode


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
