#!/usr/bin/env python3
"""Where approuter's routing cost goes: wrk through variants of the nginx configuration
`approuter generate` writes, each changed in one respect, next to plain + keepalive of
bench/routing.py. A diagnosis for whoever changes skel/nginx.conf, not one of the goals' tables;
bench/run does not run it (run it by hand: about 8 minutes).

Production route (no cookie):
  generated            as written: access log piped into `approuter svlogd -tt`, buffered by
                       nginx (`buffer=4k flush=1s`); `-f` tests cached by open_file_cache
  file tests uncached  without open_file_cache: a stat() of active/instance2 and draining per
                       request
  no file tests        neither test (production always instance1, no drain): the floor
  access_log off       `access_log = false` in approuter.toml
  log unbuffered       `access_log /dev/stdout;`: one pipe write, one logger wake-up, per request
  no X-Served-By       without `add_header X-Served-By $approuter_served_by always`
  no extra headers     without the Host, X-Forwarded-For, X-Forwarded-Proto, Upgrade headers
Alternate route (`Cookie: approuter_alt=<last of COUNT alternates>`):
  generated            as written: an upstream per alternate named `<name>.alt` plus port % 32
                       `_`, keepalive 32
  one name length      upstreams named `approuter_alt_<name>`: with names of one length, nginx's
                       walk over the upstreams compares every name
  upstream first       the measured alternate's upstream first in the file: the walk's floor
  no keepalive         the map names the address (`127.0.0.1:PORT`): no upstream block, a new
                       connection per request, and `Connection: close` (the design before)

Each variant is started (as its service runs it), warmed up and measured in turn, ROUNDS rounds
of DURATION s; medians. Environment: COUNT (1000), ROUNDS (3), DURATION (10), WARMUP (1),
CONNS (32).
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


def log_unbuffered(conf):
    return replaced(conf, GENERATED_LOG, "access_log /dev/stdout;")


CACHE = "    open_file_cache max=16 inactive=60s;\n    open_file_cache_valid 1s;\n    open_file_cache_errors on;\n"
DRAIN_TEST = "            if (-f draining) {\n                return 418;\n            }\n"
ACTIVE_TEST = ("            if (-f active/instance2) {\n"
               "                set $approuter_production approuter_instance2;\n            }\n")


def uncached(conf):
    return replaced(conf, CACHE, "")


def no_file_tests(conf):
    return replaced(replaced(conf, DRAIN_TEST, ""), ACTIVE_TEST, "")


def alternate_upstreams(conf):
    """(name, upstream, port) of every alternate, from the generated configuration."""
    return [(m.group(1), m.group(0)[len("    upstream "):].split(" ")[0], int(m.group(2)))
            for m in re.finditer(r"    upstream ([A-Za-z0-9.-]+?)\.alt_* \{\n        server 127\.0\.0\.1:(\d+);", conf)]


def one_name_length(conf):
    for name, up, _ in alternate_upstreams(conf):
        conf = replaced(conf, f"    upstream {up} {{", f"    upstream approuter_alt_{name} {{")
        conf = replaced(conf, f'        "{name}" {up};', f'        "{name}" approuter_alt_{name};')
    return conf


def upstream_first(name):
    def variant(conf):
        up = next(u for n, u, _ in alternate_upstreams(conf) if n == name)
        block = re.search(r"    upstream " + re.escape(up) + r" \{\n[^}]*\}\n", conf).group(0)
        conf = replaced(conf, block, "")
        return replaced(conf, "    upstream approuter_instance1 {", block + "    upstream approuter_instance1 {")
    return variant


def no_keepalive(conf):
    for name, up, port in alternate_upstreams(conf):
        conf = replaced(conf, f'        "{name}" {up};', f'        "{name}" "127.0.0.1:{port}";')
    conf = replaced(conf, '        "" "";\n    }', '        "" $approuter_close;\n    }')
    closes = "".join(f'        "{n}" close;\n' for n, _, _ in alternate_upstreams(conf))
    close_map = "    map $cookie_approuter_alt $approuter_close {\n        default \"\";\n" + closes + "    }\n\n"
    return replaced(conf, "    # Kept-alive connections to instances", close_map + "    # Kept-alive connections to instances")


def main():
    rounds = int(os.environ.get("ROUNDS", "3"))
    seconds = int(os.environ.get("DURATION", "10"))
    warmup = int(os.environ.get("WARMUP", "1"))
    conns = int(os.environ.get("CONNS", "32"))
    count = int(os.environ.get("COUNT", "1000"))
    exe = common.binary()
    tmp = tempfile.mkdtemp(prefix="ar-bench-routing-parts-")
    env = dict(os.environ, TMPDIR=tmp)
    procs, running = [], []
    try:
        repo = os.path.join(tmp, "app")
        common.static_repo(repo)
        common.branches(repo, [f"alt{i:04d}" for i in range(1, count + 1)])
        base = common.free_block(count + 8)
        ports = {"plain": base, "keepalive": base + 1, "listen": base + 2, "prod": base + 3, "alt_base": base + 5}
        procs.append(routing.start(["./start", str(ports["prod"])], repo, env))
        urls = {}
        for kind, conf in (("keepalive", routing.KEEPALIVE_CONF),):
            d = os.path.join(tmp, kind)
            os.makedirs(os.path.join(d, "logs"))
            with open(os.path.join(d, "nginx.conf"), "w") as f:
                f.write(conf.format(log=os.path.join(d, "logs/access.log"), port=ports[kind], backend=ports["prod"]))
            procs.append(routing.start(["nginx", "-p", d + "/", "-c", "nginx.conf", "-e", "stderr"], d, env))
            urls[kind] = f"http://127.0.0.1:{ports[kind]}/"
            common.wait_http(ports[kind])
        # Generate once (and once more without the access log), keep the texts, start each variant.
        ours = routing.Ours(exe, tmp, repo, count, ports, env)
        ours.close()
        procs.append(routing.start(["./start", str(ours.alt_port)], repo, env))
        conf_path = os.path.join(ours.root, "managed/var/nginx/nginx.conf")
        generated = open(conf_path).read()
        with open(os.path.join(ours.root, "managed/etc/approuter.toml"), "a") as f:
            f.write("access_log = false\n")
        subprocess.run([exe, "--root", ours.root, "generate"], check=True, capture_output=True, env=env)
        no_log = open(conf_path).read()
        svc = os.path.join(ours.root, "managed/var/service/nginx")
        cookie = (f"Cookie: approuter_alt={ours.alt}",)
        variants = [
            ("production", "approuter, generated", generated, ()),
            ("production", "approuter, file tests uncached", uncached(generated), ()),
            ("production", "approuter, no file tests", no_file_tests(generated), ()),
            ("production", "approuter, access_log off", no_log, ()),
            ("production", "approuter, log unbuffered", log_unbuffered(generated), ()),
            ("production", "approuter, no X-Served-By", no_served_by(generated), ()),
            ("production", "approuter, no extra headers", no_extra_headers(generated), ()),
            ("production", "plain + keepalive", "keepalive", ()),
            ("alternate", "approuter, generated", generated, cookie),
            ("alternate", "approuter, one name length", one_name_length(generated), cookie),
            ("alternate", "approuter, upstream first", upstream_first(ours.alt)(generated), cookie),
            ("alternate", "approuter, no keepalive", no_keepalive(generated), cookie),
            ("alternate", "plain + keepalive", "keepalive", cookie),
        ]
        results = {i: [] for i in range(len(variants))}
        print(f"routing parts: {count} alternates, wrk -t2 -c{conns}, {rounds} rounds x {seconds} s per variant; medians", flush=True)
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
