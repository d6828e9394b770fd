#!/usr/bin/env python3
"""Whole supervision trees with real loggers: approuter's against runit's, by memory.

For 10, 100 and 1000 services, each a `sleep` with a logger writing its own log directory with
`-tt`, the same tree is supervised by
  - approuter: the lean `approuter-svscan` that `approuter start` runs and one logger per
    service, the lean `approuter-svlogd` that generated log/run scripts exec (and, for
    comparison, `approuter svscan` with `approuter svlogd`, the full binary in both roles);
  - runit: `runsvdir -P`, a `runsv` per service, and runit's `svlogd` per service.
It waits until every service and every logger runs, lets them idle for a few seconds, and sums
the PSS (/proc/PID/smaps_rollup) of the supervision tree: supervisor processes and loggers, not
the services themselves (the same `sleep` on both sides). PSS divides shared pages among the
processes that map them, so a thousand copies of one binary cost its private pages a thousand
times and its shared pages once.

Not a test: it measures, it does not judge. Usage: bench/tree.py
Environment: SIZES (default "10 100 1000"), SETTLE_SECS (default 3).
"""

import os
import signal
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import binary, children, comm, pss_kib, says_run, sweep, wait  # noqa: E402


def make_tree(root, n, logger):
    os.makedirs(root)
    for i in range(n):
        d = os.path.join(root, f"s{i:04d}")
        os.makedirs(os.path.join(d, "log", "main"))
        with open(os.path.join(d, "run"), "w") as f:
            f.write("#!/bin/sh\nexec sleep 1000000\n")
        with open(os.path.join(d, "log", "run"), "w") as f:
            f.write(f"#!/bin/sh\nexec {logger} -tt ./main\n")
        os.chmod(os.path.join(d, "run"), 0o755)
        os.chmod(os.path.join(d, "log", "run"), 0o755)


def tree_pids(kind, top, loggers):
    """The supervision tree: the supervisor(s) and every logger."""
    pids = [top]
    if kind == "runit":
        pids += [p for p in children(top) if comm(p) == "runsv"]
    return pids + loggers


def logger_pids(root):
    out = []
    for d in sorted(os.listdir(root)):
        try:
            with open(os.path.join(root, d, "log", "supervise", "pid")) as f:
                s = f.read().strip()
            if s:
                out.append(int(s))
        except OSError:
            pass
    return out


def measure(kind, supervisor, logger, n, settle):
    with tempfile.TemporaryDirectory(prefix=f"ar-bench-tree-{kind}-") as tmp:
        root = os.path.join(tmp, "sv")
        make_tree(root, n, logger)
        if kind == "runit":
            proc = subprocess.Popen(["runsvdir", "-P", root], stdout=subprocess.DEVNULL,
                                    stderr=subprocess.DEVNULL, cwd=root)
        else:
            proc = subprocess.Popen(supervisor + [root], stdout=subprocess.DEVNULL,
                                    stderr=subprocess.DEVNULL, cwd=root)
        svcs = [os.path.join(root, d) for d in sorted(os.listdir(root)) if not d.startswith(".")]
        try:
            ok = wait(lambda: all(says_run(s) and says_run(os.path.join(s, "log")) for s in svcs),
                      120, 0.2)
            if not ok:
                raise SystemExit(f"{kind}: services and loggers did not all come up")
            time.sleep(settle)
            loggers = logger_pids(root)
            if len(loggers) != n:
                raise SystemExit(f"{kind}: {len(loggers)} loggers for {n} services")
            pids = tree_pids(kind, proc.pid, loggers)
            total = sum(pss_kib(p) for p in pids)
            per_logger = sum(pss_kib(p) for p in loggers) / n
            return total, len(pids), per_logger
        finally:
            proc.send_signal(signal.SIGTERM if kind != "runit" else signal.SIGHUP)
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
            sweep(tmp)


def main():
    sizes = [int(s) for s in os.environ.get("SIZES", "10 100 1000").split()]
    settle = float(os.environ.get("SETTLE_SECS", "3"))
    exe = binary()
    lean_logger = os.path.join(os.path.dirname(exe), "approuter-svlogd")
    lean_svscan = os.path.join(os.path.dirname(exe), "approuter-svscan")
    trees = [
        ("approuter", "approuter-svscan + approuter-svlogd", [lean_svscan], lean_logger),
        ("approuter", "approuter svscan + approuter svlogd", [exe, "svscan"], f"{exe} svlogd"),
        ("runit", "runsvdir + runsv + svlogd", None, "svlogd"),
    ]
    print("whole supervision trees: supervisors and one logger per service (`-tt`), idle; PSS summed")
    print()
    print("| services | tree | processes | PSS total | per logger | vs runit |")
    print("|---:|---|---:|---:|---:|---:|")
    for n in sizes:
        rows = [(label, measure(kind, sup, logger, n, settle)) for kind, label, sup, logger in trees]
        runit_total = rows[-1][1][0]
        for label, (total, procs, per_logger) in rows:
            print(f"| {n} | {label} | {procs} | {total} KiB | {per_logger:.0f} KiB | "
                  f"{total / runit_total:.2f} |")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
