#!/usr/bin/env python3
"""Where approuter's routing cost goes: wrk through variants of the nginx configuration
`approuter generate` writes, each changed in one respect, next to the plain proxies of
bench/routing.py. A diagnosis for whoever changes skel/nginx.conf, not one of the goals' tables;
bench/run does not run it (run it by hand: about 6 minutes).

Production route (no cookie), approuter's `upstream approuter_production { keepalive 32; }`:
  generated            as written: access log piped into `approuter svlogd -tt` as in production,
                       buffered by nginx (`buffer=4k flush=1s`)
  access_log off       `access_log = false` in approuter.toml
  access log to a file nginx writes the access log to a file itself, as the plain proxies do
  log unbuffered       `access_log /dev/stdout;`: one pipe write, one logger wake-up, per request
  no X-Served-By       without `add_header X-Served-By $approuter_served_by always`
  no extra headers     without the Host, X-Forwarded-For, X-Forwarded-Proto, Upgrade headers
Alternate route (`Cookie: approuter_alt=alt0001`), `proxy_pass http://$approuter_backend` to
"127.0.0.1:PORT", an implicit upstream without keepalive:
  generated            as written: HTTP/1.1 with `Connection: close`
  no Connection: close HTTP/1.1 without a Connection header, so nginx closes first and keeps the
                       TIME_WAIT sockets
  upstream keepalive   each alternate gets `upstream ar_<name> { server ...; keepalive 32; }`,
                       the cookie map names it, and no `Connection: close` is sent

Each variant is started (as its service runs it), warmed up and measured in turn, ROUNDS rounds
of DURATION s; medians. "logger CPU" is the share of one core `approuter svlogd` used (the
generated variants' access log goes through it). Environment: ROUNDS (3), DURATION (10), WARMUP (1), CONNS (32).
"""

import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402
import routing  # noqa: E402
from common import HZ, cpu_ticks  # noqa: E402


def replaced(conf, old, new):
    """`conf` with `old` replaced; a variant that silently equals the generated file measures nothing."""
    assert old in conf, f"{old!r} is no longer in the generated nginx.conf; update routing_parts.py"
    return conf.replace(old, new)


def no_served_by(conf):
    return replaced(conf, "            add_header X-Served-By $approuter_served_by always;\n", "")


def no_extra_headers(conf):
    for h in ("Host $host", "X-Forwarded-For $proxy_add_x_forwarded_for", "X-Forwarded-Proto $scheme",
              "Upgrade $http_upgrade"):
        conf = replaced(conf, f"            proxy_set_header {h};\n", "")
    return conf


GENERATED_LOG = "access_log /dev/stdout combined buffer=4k flush=1s;"


def log_to_file(path):
    return lambda conf: replaced(conf, GENERATED_LOG, f"access_log {path};")


def log_unbuffered(conf):
    return replaced(conf, GENERATED_LOG, "access_log /dev/stdout;")


def no_connection_close(conf):
    return replaced(conf, '"" $approuter_close;', '"" "";')


def upstream_keepalive(conf):
    conf = no_connection_close(conf)
    m = re.search(r"map \$cookie_approuter_alt \$approuter_backend \{\n(.*?)\n    \}", conf, re.S)
    ups, lines = [], []
    for line in m.group(1).splitlines():
        e = re.match(r'\s+"([^"]+)" "(127\.0\.0\.1:\d+)";', line)
        if e:
            name = "ar_" + re.sub(r"[^A-Za-z0-9_]", "_", e.group(1))
            ups.append(f"    upstream {name} {{\n        server {e.group(2)};\n        keepalive 32;\n    }}\n")
            line = f'        "{e.group(1)}" "{name}";'
        lines.append(line)
    body = "\n".join(lines)
    return conf[:m.start()] + "".join(ups) + conf[m.start():m.start(1)] + body + conf[m.end(1):]


def main():
    rounds = int(os.environ.get("ROUNDS", "3"))
    seconds = int(os.environ.get("DURATION", "10"))
    warmup = int(os.environ.get("WARMUP", "1"))
    conns = int(os.environ.get("CONNS", "32"))
    exe = common.binary()
    tmp = tempfile.mkdtemp(prefix="ar-bench-routing-parts-")
    env = dict(os.environ, TMPDIR=tmp)
    procs, running = [], []
    try:
        repo = os.path.join(tmp, "app")
        common.static_repo(repo)
        common.branches(repo, ["alt0001"])
        base = common.free_block(8)
        ports = {"plain": base, "keepalive": base + 1, "listen": base + 2, "prod": base + 3, "alt_base": base + 5}
        procs.append(routing.start(["./start", str(ports["prod"])], repo, env))
        urls = {}
        for kind, conf in (("plain", routing.PLAIN_CONF), ("keepalive", routing.KEEPALIVE_CONF)):
            d = os.path.join(tmp, kind)
            os.makedirs(os.path.join(d, "logs"))
            with open(os.path.join(d, "nginx.conf"), "w") as f:
                f.write(conf.format(log=os.path.join(d, "logs/access.log"), port=ports[kind], backend=ports["prod"]))
            procs.append(routing.start(["nginx", "-p", d + "/", "-c", "nginx.conf", "-e", "stderr"], d, env))
            urls[kind] = f"http://127.0.0.1:{ports[kind]}/"
            common.wait_http(ports[kind])
        # Generate once (and once more without the access log), keep the texts, start each variant.
        ours = routing.Ours(exe, tmp, repo, 1, ports, env)
        ours.close()
        procs.append(routing.start(["./start", str(ours.alt_port)], repo, env))
        conf_path = os.path.join(ours.root, "managed/var/nginx/nginx.conf")
        generated = open(conf_path).read()
        with open(os.path.join(ours.root, "managed/etc/approuter.toml"), "a") as f:
            f.write("access_log = false\n")
        subprocess.run([exe, "--root", ours.root, "generate"], check=True, capture_output=True, env=env)
        no_log = open(conf_path).read()
        svc = os.path.join(ours.root, "managed/var/service/nginx")
        file_log = os.path.join(tmp, "ours-access.log")
        cookie = (f"Cookie: approuter_alt={ours.alt}",)
        variants = [
            ("production", "approuter, generated", generated, ()),
            ("production", "approuter, access_log off", no_log, ()),
            ("production", "approuter, access log to a file", log_to_file(file_log)(generated), ()),
            ("production", "approuter, log unbuffered", log_unbuffered(generated), ()),
            ("production", "approuter, no X-Served-By", no_served_by(generated), ()),
            ("production", "approuter, no extra headers", no_extra_headers(generated), ()),
            ("production", "plain nginx", "plain", ()),
            ("production", "plain + keepalive", "keepalive", ()),
            ("alternate", "approuter, generated", generated, cookie),
            ("alternate", "approuter, no Connection: close", no_connection_close(generated), cookie),
            ("alternate", "approuter, upstream keepalive", upstream_keepalive(generated), cookie),
            ("alternate", "plain nginx", "plain", cookie),
            ("alternate", "plain + keepalive", "keepalive", cookie),
        ]
        results = {i: [] for i in range(len(variants))}
        print(f"routing parts: wrk -t2 -c{conns}, {rounds} rounds x {seconds} s per variant; medians", flush=True)
        print(f"machine: {common.machine()}; load before: {common.loadavg():.2f}", flush=True)
        for _ in range(rounds):
            for i, (route, label, conf, headers) in enumerate(variants):
                if conf in urls:
                    url = urls[conf]
                else:
                    with open(conf_path, "w") as f:
                        f.write(conf)
                    nginx = routing.start(["./run"], svc, env, stdout=subprocess.PIPE)
                    logger = routing.start(["./run"], os.path.join(svc, "log"), env, stdin=nginx.stdout)
                    nginx.stdout.close()
                    running = [nginx, logger]
                    if not common.wait_http(ports["listen"]):
                        raise SystemExit(f"{label}: nginx did not answer")
                    status, by = routing.served_by(ports["listen"], headers[0].split(": ", 1)[1] if headers else None)
                    if " 200" not in status:
                        raise SystemExit(f"{label}: {status}")
                    url = f"http://127.0.0.1:{ports['listen']}/"
                if warmup:
                    common.wrk(url, warmup, 2, conns, headers)
                logger_ticks = cpu_ticks(running[1].pid) if running else 0
                with common.OtherCpu(tmp) as cpu:
                    r = routing.measure(url, seconds, 2, conns, headers)
                logger = (cpu_ticks(running[1].pid) - logger_ticks) / HZ / seconds * 100 if running else None
                results[i].append((*r, cpu.percent, common.loadavg(), logger))
                if running:
                    routing.stop(running[0])
                    routing.stop(running[1])
                    running = []
    finally:
        for p in running:
            routing.stop(p)
        routing.stop(*procs)
        common.sweep(tmp)
        shutil.rmtree(tmp, ignore_errors=True)

    print()
    print("| route | variant | req/s | p50 | p99 | logger CPU | other CPU | load |")
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    for i, (route, label, _, _) in enumerate(variants):
        r = results[i]
        print(f"| {route} | {label} | {statistics.median(x[0] for x in r):.0f} | "
              f"{statistics.median(x[1] for x in r):.2f} ms | {statistics.median(x[2] for x in r):.2f} ms | "
              f"{'' if r[0][5] is None else f'{statistics.median(x[5] for x in r):.0f} %'} | "
              f"{statistics.median(x[3] for x in r):.0f} % | {max(x[4] for x in r):.2f} |")


if __name__ == "__main__":
    main()
