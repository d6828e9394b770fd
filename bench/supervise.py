#!/usr/bin/env python3
"""Supervisor benchmark: approuter svscan against runit's runsvdir on the same service trees.

For 10, 100 and 500 trivial services (no log), prints side by side:
  - memory of the supervisor processes: the sum of PSS from /proc/PID/smaps_rollup
    (svscan alone; runsvdir plus every runsv),
  - CPU they use over IDLE seconds of doing nothing,
  - restart latency after kill -9 of a service that has been up for a while: the time until
    supervise/pid names a new running process (median and worst of up to 20 kills).
Then one service that exits at once, for CRASH seconds: how often it was started and what the
crash loop cost the supervisor (and its logger) in CPU.

Not a test: it measures, it does not judge. Usage: bench/supervise.py [APPROUTER_BINARY]
Environment: SIZES (default "10 100 500"), IDLE (seconds, default 30), KILLS (default 20),
CRASH (seconds, default 60).
"""

import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import HZ, children, comm, cpu_ticks, pss_kib, says_run, sweep, wait  # noqa: E402

def make_tree(root, n):
    os.makedirs(root)
    for i in range(n):
        d = os.path.join(root, f"s{i:04d}")
        os.makedirs(d)
        with open(os.path.join(d, "run"), "w") as f:
            f.write("#!/bin/sh\nexec sleep 1000000\n")
        os.chmod(os.path.join(d, "run"), 0o755)


def supervisor_pids(kind, top):
    """approuter: the one svscan; runit: runsvdir and its runsv children."""
    if kind == "approuter":
        return [top]
    return [top] + [p for p in children(top) if comm(p) == "runsv"]


def read_pid(svc):
    try:
        with open(os.path.join(svc, "supervise/pid")) as f:
            s = f.read().strip()
        return int(s) if s else None
    except (OSError, ValueError):
        return None


def measure(kind, binary, root, n, idle, kills):
    if kind == "approuter":
        proc = subprocess.Popen([binary, "svscan", root], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=root)
    else:
        proc = subprocess.Popen(["runsvdir", "-P", root], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=root)
    svcs = [os.path.join(root, d) for d in sorted(os.listdir(root)) if not d.startswith(".")]
    try:
        if not wait(lambda: all(read_pid(s) and says_run(s) for s in svcs), 60):
            raise SystemExit(f"{kind}: services did not all come up")
        time.sleep(2)  # settle: every service has been up for a while
        pids = supervisor_pids(kind, proc.pid)
        mem = sum(pss_kib(p) for p in pids)
        t0 = sum(cpu_ticks(p) for p in pids)
        time.sleep(idle)
        cpu = (sum(cpu_ticks(p) for p in supervisor_pids(kind, proc.pid)) - t0) / HZ
        lat = []
        for svc in svcs[: min(kills, len(svcs))]:
            old = read_pid(svc)
            start = time.perf_counter()
            os.kill(old, signal.SIGKILL)
            while True:
                new = read_pid(svc)
                if new and new != old and says_run(svc):
                    break
                if time.perf_counter() - start > 10:
                    raise SystemExit(f"{kind}: {svc} did not restart")
                time.sleep(0.0005)
            lat.append((time.perf_counter() - start) * 1000)
        return mem, cpu, statistics.median(lat), max(lat)
    finally:
        if kind == "approuter":
            proc.send_signal(signal.SIGTERM)
        else:
            proc.send_signal(signal.SIGHUP)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
        # runsv children exit after their service; sweep anything left under the tree.
        sweep(root)


def crash_loop(kind, binary, seconds):
    """A service that exits 1 at once, with a logger: starts and supervisor CPU over `seconds`."""
    with tempfile.TemporaryDirectory(prefix=f"ar-bench-crash-{kind}-") as tmp:
        root = os.path.join(tmp, "sv")
        svc = os.path.join(root, "crash")
        os.makedirs(os.path.join(svc, "log"))
        starts = os.path.join(tmp, "starts")
        with open(os.path.join(svc, "run"), "w") as f:
            f.write(f"#!/bin/sh\necho start >> {starts}\necho crashing\nexit 1\n")
        logger = f"exec {binary} svlogd -tt ../../../log" if kind == "approuter" else "exec svlogd -tt ../../../log"
        os.makedirs(os.path.join(tmp, "log"))
        with open(os.path.join(svc, "log", "run"), "w") as f:
            f.write(f"#!/bin/sh\n{logger}\n")
        for p in ("run", "log/run"):
            os.chmod(os.path.join(svc, p), 0o755)
        if kind == "approuter":
            proc = subprocess.Popen([binary, "svscan", root], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=root)
        else:
            proc = subprocess.Popen(["runsvdir", "-P", root], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=root)
        try:
            wait(lambda: os.path.exists(starts), 10)
            time.sleep(0.5)
            # The supervision tree: the supervisor(s) and the logger; the crashing runs come and go.
            def tree(pid):
                return [pid] + [d for c in children(pid) for d in tree(c)]

            def pids():
                return set(tree(proc.pid))

            before = {p: cpu_ticks(p) for p in pids()}
            with open(starts) as f:
                n0 = len(f.readlines())
            time.sleep(seconds)
            # Only processes alive throughout: a run caught at either end would skew the sum.
            cpu = sum(cpu_ticks(p) - t for p, t in before.items() if p in pids()) / HZ
            with open(starts) as f:
                n = len(f.readlines()) - n0
            return n, cpu
        finally:
            proc.send_signal(signal.SIGTERM if kind == "approuter" else signal.SIGHUP)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
            sweep(root)


def main():
    binary = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "../target/release/approuter")
    binary = os.path.abspath(binary)
    if not shutil.which("runsvdir"):
        raise SystemExit("runsvdir not found: apt-get install runit")
    sizes = [int(s) for s in os.environ.get("SIZES", "10 100 500").split()]
    idle = float(os.environ.get("IDLE", "30"))
    kills = int(os.environ.get("KILLS", "20"))
    print(f"supervisor benchmark: {idle:.0f} s idle, restart latency over {kills} kill -9s of services up >2 s")
    print(f"{'services':>8} | {'supervisor':<10} | {'PSS total':>10} | {'idle CPU':>9} | {'restart p50':>11} | {'restart max':>11}")
    print("-" * 76)
    for n in sizes:
        for kind in ("approuter", "runit"):
            with tempfile.TemporaryDirectory(prefix=f"ar-bench-{kind}-") as tmp:
                root = os.path.join(tmp, "sv")
                make_tree(root, n)
                mem, cpu, p50, worst = measure(kind, binary, root, n, idle, kills)
                print(f"{n:>8} | {kind:<10} | {mem:>7} KiB | {cpu:>7.2f} s | {p50:>8.2f} ms | {worst:>8.2f} ms", flush=True)
    crash = float(os.environ.get("CRASH", "60"))
    print()
    print(f"crash loop: a service that exits 1 at once, with a logger, for {crash:.0f} s")
    print(f"{'supervisor':<10} | {'starts':>6} | {'CPU':>7} | {'share of a core':>15}")
    print("-" * 48)
    for kind in ("approuter", "runit"):
        n, cpu = crash_loop(kind, binary, crash)
        print(f"{kind:<10} | {n:>6} | {cpu:>5.2f} s | {100 * cpu / crash:>14.2f}%", flush=True)


if __name__ == "__main__":
    main()
