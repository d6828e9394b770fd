#!/usr/bin/env python3
"""Routing cost: wrk through approuter's generated nginx against a minimal hand-written nginx
`proxy_pass`, both in front of the same fast backend, measured in the same run, alternating.

For 1, 100 and 1000 alternates in alternates.conf, `approuter generate` writes the configuration;
then only what the measurement needs runs: the production backend on instance1's port, one
alternate's backend on its port (both a one-worker nginx answering 200 "ok", so the proxy is what
is measured), and approuter's nginx started exactly as its service runs it (`service/nginx/run`,
its output piped into `service/nginx/log/run`, so access logging costs what it costs in
production). The plain baseline runs all the time on its own port:

    worker_processes auto; events {}
    http { access_log <file>; server { listen PORT; location / { proxy_pass http://127.0.0.1:PROD; } } }

A third proxy, "plain + keepalive", is the same with an `upstream { keepalive 32; }` (HTTP/1.1,
`Connection ""`), as approuter's production upstream has: the like-for-like reference for what
approuter's configuration adds (maps, headers, the access log through a pipe).

Each cell (alternate count x route) runs ROUNDS rounds of DURATION seconds, approuter, plain,
plain + keepalive in turn, and reports medians. Routes: no cookie (production), and `Cookie: approuter_alt=<last alternate>`
(the plain proxy ignores the cookie and goes to the same production backend). Before measuring,
curl checks that approuter's answers carry one X-Served-By naming the expected instance.

"other CPU" is the share of both cores used by processes that are not the benchmark's during the
cell; "load" is the 1-minute load average when the cell began (which includes the benchmark's own
previous cell). Not a test: it measures and prints PASS/MISS against the goals: the production
route at least 0.95 x plain + keepalive, the alternate route at least 0.9 x plain + keepalive
(both keep connections to the instance alive), at every alternate count. The alternate route
is measured for the last alternate (nginx walks every upstream block before it finds its own)
and, at the largest count, for the middle one.

Usage: bench/routing.py    Environment: COUNTS ("1 100 1000"), ROUNDS (3), DURATION (10 s),
EXTRA_TOML (settings appended to approuter.toml, e.g. "gzip = false"),
WARMUP (2 s), CONNS (32), THREADS (2).
"""

import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402

PLAIN_CONF = """daemon off;
worker_processes auto;
pid nginx.pid;
error_log stderr;
events {{}}
http {{
    access_log {log};
    server {{
        listen {port};
        location / {{
            proxy_pass http://127.0.0.1:{backend};
        }}
    }}
}}
"""

# The same with connections to the backend kept alive, as approuter's production upstream does
# (`keepalive 32`): the like-for-like reference for approuter's own additions (maps, headers,
# access log through a pipe).
KEEPALIVE_CONF = """daemon off;
worker_processes auto;
pid nginx.pid;
error_log stderr;
events {{}}
http {{
    access_log {log};
    upstream backend {{
        server 127.0.0.1:{backend};
        keepalive 32;
    }}
    server {{
        listen {port};
        location / {{
            proxy_pass http://backend;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }}
    }}
}}
"""

PROXIES = (("ours", "approuter"), ("plain", "plain nginx"), ("keepalive", "plain + keepalive"))


def start(cmd, cwd, env, **kw):
    return subprocess.Popen(cmd, cwd=cwd, env=env, stdout=kw.pop("stdout", subprocess.DEVNULL),
                            stderr=subprocess.DEVNULL, **kw)


def stop(*procs):
    for p in procs:
        if p and p.poll() is None:
            p.send_signal(signal.SIGTERM)
    for p in procs:
        if p:
            try:
                p.wait(timeout=15)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()


def served_by(port, cookie=None):
    """The X-Served-By headers of one answer, and its status line."""
    cmd = ["curl", "-s", "-o", "/dev/null", "-D", "-", f"http://127.0.0.1:{port}/"]
    if cookie:
        cmd += ["-b", cookie]
    head = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout.splitlines()
    return head[0].strip() if head else "", [h.split(":", 1)[1].strip() for h in head if h.lower().startswith("x-served-by:")]


class Ours:
    """approuter's nginx for one alternate count: generated, started as its service runs it."""

    def __init__(self, exe, tmp, repo, n, ports, env):
        self.root = os.path.join(tmp, f"root-{n}")
        etc = os.path.join(self.root, "managed/etc")
        os.makedirs(etc)
        self.alts = [f"alt{i:04d}" for i in range(1, n + 1)]
        with open(os.path.join(etc, "repo.conf"), "w") as f:
            f.write(repo + "\n")
        with open(os.path.join(etc, "alternates.conf"), "w") as f:
            f.write("".join(a + "\n" for a in self.alts))
        self.listen = ports["listen"]
        with open(os.path.join(etc, "approuter.toml"), "w") as f:
            f.write(f"listen_port = {self.listen}\nprod_ports = [{ports['prod']}, {ports['prod'] + 1}]\n"
                    f"alternate_base_port = {ports['alt_base']}\n")
            # More settings, for experiments (e.g. "gzip = false"): one per line.
            f.write(os.environ.get("EXTRA_TOML", "").replace("\\n", "\n") + "\n")
        r = subprocess.run([exe, "--root", self.root, "generate"], capture_output=True, text=True, env=env)
        if r.returncode != 0:
            raise SystemExit(f"generate with {n} alternates failed:\n{r.stdout}{r.stderr}")
        # The last alternate: nginx walks every upstream block before it finds its own (the
        # worst case); with many alternates, the middle one too (the average case).
        self.alt = self.alts[-1]
        self.middle = self.alts[len(self.alts) // 2] if n > 2 else None
        with open(os.path.join(self.root, "managed/var/state/ports")) as f:
            table = dict(line.split() for line in f if line.strip() and not line.startswith("#"))
        self.alt_port = int(table[self.alt])
        svc = os.path.join(self.root, "managed/var/service/nginx")
        self.alt_backend = start(["./start", str(self.alt_port)], repo, env)
        self.middle_backend = (start(["./start", str(table[self.middle])], repo, env)
                               if self.middle else None)
        self.nginx = start(["./run"], svc, env, stdout=subprocess.PIPE)
        self.logger = start(["./run"], os.path.join(svc, "log"), env, stdin=self.nginx.stdout)
        self.nginx.stdout.close()
        if not (common.wait_http(self.listen) and common.wait_http(self.alt_port)):
            raise SystemExit(f"approuter's nginx or the alternate backend did not answer ({n} alternates)")

    def close(self):
        stop(self.nginx, self.alt_backend, self.middle_backend)
        stop(self.logger)


def measure(url, seconds, threads, conns, headers):
    rps, p50, p99, non2xx, errors, _ = common.wrk(url, seconds, threads, conns, headers)
    if non2xx or errors:
        print(f"  warning: {url} {headers}: {non2xx} non-2xx answers, {errors} socket errors", flush=True)
    return rps, p50, p99


def main():
    counts = [int(x) for x in os.environ.get("COUNTS", "1 100 1000").split()]
    rounds = int(os.environ.get("ROUNDS", "3"))
    seconds = int(os.environ.get("DURATION", "10"))
    warmup = int(os.environ.get("WARMUP", "2"))
    conns = int(os.environ.get("CONNS", "32"))
    threads = int(os.environ.get("THREADS", "2"))
    for tool in ("wrk", "nginx", "curl"):
        if not shutil.which(tool):
            raise SystemExit(f"bench/routing.py: {tool} not found; run .ci/install-packages")
    exe = common.binary()
    tmp = tempfile.mkdtemp(prefix="ar-bench-routing-")
    env = dict(os.environ, TMPDIR=tmp)
    procs = []
    ours = None
    results = {}  # (n, route) -> {"ours": [(rps, p50, p99)], "plain": [...], "other": [...], "load": x}
    try:
        repo = os.path.join(tmp, "app")
        common.static_repo(repo)
        common.branches(repo, [f"alt{i:04d}" for i in range(1, max(counts) + 1)])
        base = common.free_block(max(counts) + 5)
        ports = {"plain": base, "keepalive": base + 1, "listen": base + 2, "prod": base + 3, "alt_base": base + 5}

        # The production backend and the plain proxies run for the whole benchmark.
        procs.append(start(["./start", str(ports["prod"])], repo, env))
        urls = {}
        for kind, conf, port in (("plain", PLAIN_CONF, ports["plain"]), ("keepalive", KEEPALIVE_CONF, ports["keepalive"])):
            d = os.path.join(tmp, kind)
            os.makedirs(os.path.join(d, "logs"))
            with open(os.path.join(d, "nginx.conf"), "w") as f:
                f.write(conf.format(log=os.path.join(d, "logs/access.log"), port=port, backend=ports["prod"]))
            procs.append(start(["nginx", "-p", d + "/", "-c", "nginx.conf", "-e", "stderr"], d, env))
            urls[kind] = f"http://127.0.0.1:{port}/"
            if not common.wait_http(port):
                raise SystemExit(f"the {kind} nginx did not answer")
        if not common.wait_http(ports["prod"]):
            raise SystemExit("the production backend did not answer")

        print(f"routing benchmark: wrk -t{threads} -c{conns}, {rounds} rounds x {seconds} s per proxy and cell, "
              f"approuter / plain / plain + keepalive in turn; medians; backend: a one-worker nginx", flush=True)
        print(f"machine: {common.machine()}; load before: {common.loadavg():.2f}", flush=True)
        for n in counts:
            ours = Ours(exe, tmp, repo, n, ports, env)
            urls["ours"] = f"http://127.0.0.1:{ours.listen}/"
            routes = [("production", ()), ("alternate", (f"Cookie: approuter_alt={ours.alt}",))]
            if ours.middle and n == max(counts):
                routes.append(("alternate (middle)", (f"Cookie: approuter_alt={ours.middle}",)))
            for cookie, want in [(None, "instance1"), (f"approuter_alt={ours.alt}", ours.alt)] + (
                    [(f"approuter_alt={ours.middle}", ours.middle)] if ours.middle else []):
                status, by = served_by(ours.listen, cookie)
                if " 200" not in status or by != [want]:
                    raise SystemExit(f"{n} alternates, cookie {cookie}: got {status!r}, X-Served-By {by}, want [{want!r}]")
            for route, headers in routes:
                cell = results[(n, route)] = {"load": common.loadavg()}
                for kind, _ in PROXIES:
                    cell[kind], cell[kind + " other"] = [], []
                    if warmup:
                        common.wrk(urls[kind], warmup, threads, conns, headers)
                for _ in range(rounds):
                    for kind, _ in PROXIES:
                        with common.OtherCpu(tmp) as cpu:
                            cell[kind].append(measure(urls[kind], seconds, threads, conns, headers))
                        cell[kind + " other"].append(cpu.percent)
                print(f"  {n} alternates, {route} route: done (load {common.loadavg():.2f})", flush=True)
            ours.close()
            ours = None
    finally:
        if ours:
            ours.close()
        stop(*procs)
        common.sweep(tmp)
        shutil.rmtree(tmp, ignore_errors=True)

    def med(xs, i):
        return statistics.median(x[i] for x in xs)

    goal = {"production": 0.95, "alternate": 0.9, "alternate (middle)": 0.9}
    print()
    print("| alternates | route | proxy | req/s | p50 | p99 | approuter / this | other CPU | load |")
    print("|---:|---|---|---:|---:|---:|---:|---:|---:|")
    misses = []
    for (n, route), c in results.items():
        ratio = med(c["ours"], 0) / med(c["keepalive"], 0)
        if ratio < goal[route]:
            misses.append(f"{n} alternates/{route} route ({ratio:.2f})")
        for kind, label in PROXIES:
            r = c[kind]
            if kind == "ours":
                rel = ""
            else:
                x = med(c["ours"], 0) / med(r, 0)
                rel = f"{x:.2f}" + (f" {'PASS' if x >= goal[route] else 'MISS'}" if kind == "keepalive" else "")
            print(f"| {n} | {route} | {label} | {med(r, 0):.0f} | {med(r, 1):.2f} ms | {med(r, 2):.2f} ms | "
                  f"{rel} | {statistics.median(c[kind + ' other']):.0f} % | {c['load']:.2f} |")
    print()
    print("goal: approuter >= 0.95 (production) / 0.9 (alternate) x plain + keepalive's req/s in every cell:",
          "PASS" if not misses else f"MISS: {', '.join(misses)}")
    lo, hi = min(counts), max(counts)
    for route in ("production", "alternate"):
        if (lo, route) in results and (hi, route) in results and lo != hi:
            a, b = med(results[(lo, route)]["ours"], 0), med(results[(hi, route)]["ours"], 0)
            print(f"goal: {route} route, approuter's req/s with {hi} alternates / with {lo} = {b / a:.3f} (>= 0.95):",
                  "PASS" if b / a >= 0.95 else "MISS")


if __name__ == "__main__":
    main()
