#!/usr/bin/env python3
"""Production updates under load: 50 `approuter sync` deploys while wrk hammers nginx.

Prints: failed requests (wrk's non-2xx answers, wrk's socket errors, and non-2xx answers in
nginx's own access log; wrk never sends a request again, so the goal is zero), requests per second during the updates against the same without
updates, and the time from `sync` start to the new version serving, minus the application's own
start-up time (the overhead approuter adds to a deploy).

Not a test. Usage: bench/sync.py    Environment: UPDATES (default 50), BASELINE (seconds, 10).
"""

import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402


def get(port, path="/"):
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as r:
        return r.status, dict(r.headers), r.read()


def app_startup(checkout, runs=10):
    """Median time from `./start PORT` to /diagnostic answering 200, run by hand."""
    times = []
    for _ in range(runs):
        port = common.free_block(1, 40000)
        t0 = time.perf_counter()
        p = subprocess.Popen(["./start", str(port)], cwd=checkout, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            while True:
                try:
                    if get(port, "/diagnostic")[0] == 200:
                        break
                except OSError:
                    time.sleep(0.002)
            times.append(time.perf_counter() - t0)
        finally:
            p.kill()
            p.wait()
    return statistics.median(times)


def access_statuses(root, since, until):
    """Statuses of the requests nginx logged from `since` (an svlogd -tt timestamp) on, in
    `current` and the files rotated out of it."""
    d = os.path.join(root, "managed/var/log/nginx")
    statuses = []
    for name in sorted(os.listdir(d)):
        if name == "current" or name.startswith("@"):
            with open(os.path.join(d, name), errors="replace") as f:
                for line in f:
                    if since <= line[:25] < until:
                        m = re.search(r'" (\d{3}) \d+ "', line)
                        if m:
                            statuses.append(int(m.group(1)))
    return statuses


def svlogd_now():
    t = time.time()
    return time.strftime("%Y-%m-%d_%H:%M:%S", time.gmtime(t)) + f"{t % 1:.5f}"[1:]


class Cleanup:
    """Removes the application repository's temp dir at the end."""

    def __init__(self, tmp):
        self.tmp = tmp

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        shutil.rmtree(self.tmp, ignore_errors=True)


def main():
    updates = int(os.environ.get("UPDATES", "50"))
    baseline_secs = int(os.environ.get("BASELINE", "10"))
    exe = common.binary()
    tmp = tempfile.mkdtemp(prefix="ar-bench-sync-")
    repo = os.path.join(tmp, "app")
    common.demo_repo(repo)
    with common.Env(exe, repo) as env, Cleanup(tmp):
        r = env.run("start", check=False)
        if r.returncode != 0:
            raise SystemExit(r.stdout + r.stderr)
        url = f"http://127.0.0.1:{env.listen}/"
        startup = app_startup(os.path.join(env.root, "managed/prod/instance1"))
        base = common.wrk(url, baseline_secs)

        # Estimate one update's time, then let wrk run for all of them.
        times = []
        version = 1

        def update():
            nonlocal version
            version += 1
            common.commit(repo, "VERSION", f"{version}\n", f"v{version}")
            t0 = time.perf_counter()
            r = env.run("sync", check=False)
            took = time.perf_counter() - t0
            if r.returncode != 0:
                raise SystemExit(f"sync failed:\n{r.stdout}{r.stderr}")
            served = get(env.listen)[1].get("X-App-Version")
            if served != str(version):
                raise SystemExit(f"after sync {version}, production serves {served}")
            times.append(took)

        since = svlogd_now()
        # wrk runs until told to stop (SIGINT prints its totals), so the numbers cover the updates only.
        w = subprocess.Popen(["wrk", "--latency", "-t", "2", "-c", "32", "-d", "3600s", url],
                             stdout=subprocess.PIPE, text=True)
        time.sleep(0.5)
        while len(times) < updates:
            update()
        # Requests cut off by wrk's own stop are logged after this moment (as 499) and not counted.
        until = svlogd_now()
        w.send_signal(signal.SIGINT)
        out = w.communicate()[0]
        during = common.parse_wrk(out)
        time.sleep(1)
        statuses = access_statuses(env.root, since, until)
        bad = [s for s in statuses if not 200 <= s < 300]

    p50 = statistics.median(times)
    print(f"sync benchmark: {len(times)} production updates under wrk (-t2 -c32), demo app")
    print(f"machine: {common.machine()}")
    print()
    print(f"{'':38} | {'value':>12}")
    print("-" * 54)
    print(f"{'requests/s without updates':38} | {base[0]:>12.0f}")
    print(f"{'requests/s during updates':38} | {during[0]:>12.0f}")
    print(f"{'wrk non-2xx answers':38} | {during[3]:>12}")
    print(f"{'wrk socket errors':38} | {during[4]:>12}")
    print(f"{'non-2xx in nginx access log':38} | {len(bad):>12}  (of {len(statuses)}: {sorted(set(bad))})")
    print(f"{'app start-up (./start to 200)':38} | {startup * 1000:>9.0f} ms")
    print(f"{'sync to new version, median':38} | {p50 * 1000:>9.0f} ms")
    print(f"{'sync to new version, worst':38} | {max(times) * 1000:>9.0f} ms")
    print(f"{'overhead (median - app start-up)':38} | {(p50 - startup) * 1000:>9.0f} ms")
    failed = during[3] + during[4] + len(bad)
    print()
    print(f"goal: zero failed requests (wrk's non-2xx and socket errors, nginx's non-2xx) over {len(times)} updates:",
          "PASS" if failed == 0 else f"MISS ({failed})")


if __name__ == "__main__":
    main()
