#!/usr/bin/env python3
"""The control plane at scale: generate, status, the supervisor's memory and sync with many
alternates and services, against issue 7's goals and, where there is one, runit.

  generate  `approuter generate` with 1 and 1000 alternates: from scratch (managed/var removed
            before each run) and again with nothing to change; and `nginx -t` alone on the
            generated configuration (a part of every run). Goal: under 1 s with 1000.
  status    1000 trivial services (run: `exec sleep 1000000`, log/run: `exec cat >/dev/null`)
            under `approuter svscan`: the time until all 2000 processes run, the supervisor's
            PSS, `approuter status` (goal: under 100 ms) and runit's `sv status` on the same
            1000 directories; then the same tree under runit's `runsvdir` (runsvdir plus every
            runsv) for the start time and PSS.
  sync      a real environment (`approuter start`) with 100 alternates of a fast application (a
            one-worker nginx), then `approuter sync` with nothing new (goal: under 5 s); for
            reference, sync when 1 alternate's branch moved and when all 100 moved (fetched in
            parallel, restarted, health-checked).

Every figure is a median of RUNS runs (5; status: STATUS_RUNS, 10). "load" is the 1-minute load
average when the measurement began; "other CPU" the share of both cores other people's processes
used during it. Not a test. Usage: bench/scale.py [generate] [status] [sync]
Environment: RUNS, STATUS_RUNS, SERVICES (1000), ALTERNATES (1000), SYNC_ALTERNATES (100).
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
import common  # noqa: E402
from common import children, comm, says_run, wait  # noqa: E402


def verdict(value, goal):
    return "PASS" if value < goal else "MISS"


def timed(cmd, runs, tmp, env=None, before=None, check=True):
    """Median wall time (s) of `cmd` over `runs` runs, the other-CPU share and the load before."""
    load = common.loadavg()
    times = []
    with common.OtherCpu(tmp) as cpu:  # over all runs: clock ticks are too coarse for one
        for _ in range(runs):
            if before:
                before()
            t0 = time.perf_counter()
            r = subprocess.run(cmd, capture_output=True, text=True, env=env)
            times.append(time.perf_counter() - t0)
            if check and r.returncode != 0:
                raise SystemExit(f"{' '.join(cmd)} failed ({r.returncode}):\n{r.stdout[-2000:]}{r.stderr[-2000:]}")
    return statistics.median(times), cpu.percent, load


def row(cells):
    print("| " + " | ".join(str(c) for c in cells) + " |", flush=True)


# ---------------------------------------------------------------------------------------------

def bench_generate(exe, tmp, runs):
    n_max = int(os.environ.get("ALTERNATES", "1000"))
    repo = os.path.join(tmp, "app")
    common.static_repo(repo)
    common.branches(repo, [f"alt{i:04d}" for i in range(1, n_max + 1)])
    base = common.free_block(n_max + 3)
    print(f"\n### generate ({runs} runs each, median)\n")
    row(["alternates", "from scratch", "nothing to change", "nginx -t alone", "goal < 1 s", "other CPU", "load"])
    row(["---:", "---:", "---:", "---:", "---", "---:", "---:"])
    for n in sorted({1, n_max}):
        root = os.path.join(tmp, f"gen-{n}")
        common.write_config(root, repo, [f"alt{i:04d}" for i in range(1, n + 1)], base)
        cmd = [exe, "--root", root, "generate"]
        var = os.path.join(root, "managed/var")
        scratch, other, load = timed(cmd, runs, tmp, before=lambda: shutil.rmtree(var, ignore_errors=True))
        again, other2, _ = timed(cmd, runs, tmp)
        out = subprocess.run(cmd, capture_output=True, text=True).stdout.strip()
        if out != "nothing changed":
            raise SystemExit(f"a second generate changed something: {out}")
        # nginx -t on a copy of what generate wrote, the way generate runs it.
        check = os.path.join(tmp, f"check-{n}")
        shutil.copytree(os.path.join(var, "nginx"), check)
        t, _, _ = timed(["nginx", "-e", "stderr", "-t", "-q", "-p", check + "/", "-c", os.path.join(check, "nginx.conf")],
                        runs, tmp)
        row([n, f"{scratch * 1000:.0f} ms", f"{again * 1000:.0f} ms", f"{t * 1000:.0f} ms",
             verdict(max(scratch, again), 1.0) if n == n_max else "", f"{max(other, other2):.0f} %", f"{load:.2f}"])


# ---------------------------------------------------------------------------------------------

def make_services(svdir, n):
    os.makedirs(svdir)
    for i in range(n):
        d = os.path.join(svdir, f"s{i:04d}")
        os.makedirs(os.path.join(d, "log"))
        for path, text in ((os.path.join(d, "run"), "#!/bin/sh\nexec sleep 1000000\n"),
                           (os.path.join(d, "log/run"), "#!/bin/sh\nexec cat >/dev/null\n")):
            with open(path, "w") as f:
                f.write(text)
            os.chmod(path, 0o755)


def all_up(svcs):
    return all(says_run(s) and says_run(os.path.join(s, "log")) for s in svcs)


def clear_supervise(svcs):
    for s in svcs:
        for d in (s, os.path.join(s, "log")):
            shutil.rmtree(os.path.join(d, "supervise"), ignore_errors=True)


def bench_status(exe, tmp, runs):
    n = int(os.environ.get("SERVICES", "1000"))
    root = os.path.join(tmp, "status")
    svdir = os.path.join(root, "managed/var/service")
    make_services(svdir, n)
    svcs = [os.path.join(svdir, d) for d in sorted(os.listdir(svdir))]
    results = {}

    # approuter svscan
    load = common.loadavg()
    t0 = time.perf_counter()
    proc = subprocess.Popen([exe, "svscan", svdir], cwd=root, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        if not wait(lambda: all_up(svcs), 120, 0.05):
            raise SystemExit("svscan: not every service and log came up within 120 s")
        up = time.perf_counter() - t0
        time.sleep(2)
        pss = common.pss_kib(proc.pid)
        st, st_other, st_load = timed([exe, "--root", root, "status"], runs, tmp)
        lines = subprocess.run([exe, "--root", root, "status"], capture_output=True, text=True).stdout.splitlines()
        if len(lines) != n or not all(line.startswith("[+ +++ +++]") for line in lines):
            raise SystemExit(f"approuter status: expected {n} lines of up services, got {len(lines)}: {lines[:3]}")
        sv = shutil.which("sv")
        svt = timed([sv, "status", *svcs], runs, tmp)[0] if sv else None
        results["approuter"] = (up, pss, st, svt, st_other, st_load, load)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
        common.sweep(root)

    # runit runsvdir on the same tree, fresh supervise/ directories
    if shutil.which("runsvdir"):
        clear_supervise(svcs)
        load = common.loadavg()
        t0 = time.perf_counter()
        proc = subprocess.Popen(["runsvdir", "-P", svdir], cwd=root, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            if not wait(lambda: all_up(svcs), 120, 0.05):
                raise SystemExit("runsvdir: not every service and log came up within 120 s")
            up = time.perf_counter() - t0
            time.sleep(2)
            runsvs = [p for p in children(proc.pid) if comm(p) == "runsv"]
            pss = common.pss_kib(proc.pid) + sum(common.pss_kib(p) for p in runsvs)
            svt = timed([shutil.which("sv"), "status", *svcs], runs, tmp)[0] if shutil.which("sv") else None
            results["runit"] = (up, pss, None, svt, None, None, load)
        finally:
            proc.send_signal(signal.SIGHUP)  # runsvdir: HUP ends every runsv, which ends its service
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
            wait(lambda: not children(proc.pid), 30, 0.05)
            common.sweep(root)

    print(f"\n### {n} services, each with a log (status: {runs} runs, median)\n")
    row(["supervisor", f"all {2 * n} processes up", "supervisor PSS", "approuter status", "goal < 100 ms",
         "sv status (runit's)", "other CPU", "load"])
    row(["---", "---:", "---:", "---:", "---", "---:", "---:", "---:"])
    for kind, (up, pss, st, svt, other, st_load, load) in results.items():
        row(["approuter svscan" if kind == "approuter" else "runit runsvdir + runsv",
             f"{up:.2f} s", f"{pss} KiB",
             f"{st * 1000:.0f} ms" if st is not None else "",
             verdict(st, 0.1) if st is not None else "",
             f"{svt * 1000:.0f} ms" if svt is not None else "",
             f"{other:.0f} %" if other is not None else "", f"{load:.2f}"])


# ---------------------------------------------------------------------------------------------

def move_branches(repo, names, tag):
    """One new commit on each branch in `names` (same tree, new id)."""
    tree = common.git(repo, "rev-parse", "main^{tree}")
    lines = []
    for b in names:
        c = common.git(repo, "commit-tree", tree, "-p", f"refs/heads/{b}", "-m", f"{tag} {b}")
        lines.append(f"update refs/heads/{b} {c}\n")
    subprocess.run(["git", "update-ref", "--stdin"], cwd=repo, input="".join(lines), text=True, check=True)


def bench_sync(exe, tmp, runs):
    n = int(os.environ.get("SYNC_ALTERNATES", "100"))
    repo = os.path.join(tmp, "sync-app")
    common.static_repo(repo)
    alts = [f"alt{i:04d}" for i in range(1, n + 1)]
    common.branches(repo, alts)
    env = dict(os.environ, TMPDIR=tmp)
    rows = []
    with common.Env(exe, repo, alternates=alts, prefix="ar-bench-scale-sync-") as e:
        t0 = time.perf_counter()
        r = e.run("start", check=False, env=env)
        started = time.perf_counter() - t0
        if r.returncode != 0:
            raise SystemExit(f"approuter start with {n} alternates failed:\n{r.stdout[-3000:]}{r.stderr[-3000:]}")
        rows.append((f"`approuter start` ({n} alternates + 2 production, cloned, healthy)", started, None, None, ""))
        cmd = [exe, "--root", e.root, "sync"]
        t, other, load = timed(cmd, runs, e.tmp, env=env)
        rows.append((f"`sync`, nothing new (median of {runs})", t, other, load, verdict(t, 5.0)))
        for moved in (1, n):
            times, others = [], []
            load = common.loadavg()
            for i in range(max(1, runs // 2)):
                move_branches(repo, alts[:moved], f"move{moved}-{i}")
                with common.OtherCpu(e.tmp) as cpu:
                    t0 = time.perf_counter()
                    r = e.run("sync", check=False, env=env)
                    times.append(time.perf_counter() - t0)
                others.append(cpu.percent)
                if r.returncode != 0:
                    raise SystemExit(f"sync after moving {moved} branches failed:\n{r.stdout[-3000:]}{r.stderr[-3000:]}")
                updated = sum(1 for line in r.stdout.splitlines() if "restarted, healthy" in line)
                if updated != moved:
                    raise SystemExit(f"sync after moving {moved} branches updated {updated}:\n{r.stdout[-3000:]}")
            rows.append((f"`sync`, {moved} alternate{'s' if moved > 1 else ''} moved (median of {len(times)})",
                         statistics.median(times), statistics.median(others), load, ""))
    print(f"\n### sync with {n} alternates (a one-worker nginx each)\n")
    row(["", "time", "goal < 5 s", "other CPU", "load"])
    row(["---", "---:", "---", "---:", "---:"])
    for label, t, other, load, v in rows:
        row([label, f"{t:.2f} s", v, f"{other:.0f} %" if other is not None else "",
             f"{load:.2f}" if load is not None else ""])


def main():
    runs = int(os.environ.get("RUNS", "5"))
    status_runs = int(os.environ.get("STATUS_RUNS", "10"))
    parts = sys.argv[1:] or ["generate", "status", "sync"]
    for tool in ("nginx", "git"):
        if not shutil.which(tool):
            raise SystemExit(f"bench/scale.py: {tool} not found; run .ci/install-packages")
    exe = common.binary()
    tmp = tempfile.mkdtemp(prefix="ar-bench-scale-")
    print("control plane at scale")
    print(f"machine: {common.machine()}; load before: {common.loadavg():.2f}", flush=True)
    try:
        if "generate" in parts:
            bench_generate(exe, tmp, runs)
        if "status" in parts:
            common.settle()
            bench_status(exe, tmp, status_runs)
        if "sync" in parts:
            common.settle()
            bench_sync(exe, tmp, runs)
    finally:
        common.sweep(tmp)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
