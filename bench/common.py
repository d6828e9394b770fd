"""Shared pieces of approuter's benchmark scripts: the binary, temp roots, ports, app repos, wrk."""

import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)


def binary():
    """The release binary, built if needed."""
    subprocess.run(["cargo", "build", "--release", "--quiet"], cwd=REPO, check=True)
    return os.path.join(REPO, "target/release/approuter")


def free_block(n, start=30000):
    """n consecutive free ports."""
    base = start
    while True:
        ok = True
        for p in range(base, base + n):
            s = socket.socket()
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                s.bind(("0.0.0.0", p))
            except OSError:
                ok = False
            finally:
                s.close()
            if not ok:
                break
        if ok:
            return base
        base += n


def git(d, *args):
    env = dict(os.environ, GIT_AUTHOR_NAME="bench", GIT_AUTHOR_EMAIL="b@x.invalid",
               GIT_COMMITTER_NAME="bench", GIT_COMMITTER_EMAIL="b@x.invalid")
    return subprocess.run(["git", *args], cwd=d, env=env, check=True, capture_output=True, text=True).stdout.strip()


def demo_repo(d, files=None):
    """A git repository holding skel/demo-app (or the given files) on branch main."""
    os.makedirs(d)
    git(d, "init", "-q", "-b", "main")
    if files is None:
        for f in ("start", "server.py"):
            shutil.copy2(os.path.join(REPO, "skel/demo-app", f), os.path.join(d, f))
        files = {"BRANCH": "main\n", "VERSION": "1\n"}
    for name, text in files.items():
        p = os.path.join(d, name)
        with open(p, "w") as f:
            f.write(text)
        if name == "start":
            os.chmod(p, 0o755)
    git(d, "add", "-A")
    git(d, "commit", "-q", "-m", "v1")


# A fast application, so that what a benchmark measures is the proxy in front of it: `./start PORT`
# runs a one-worker nginx that answers every path (the health path too) with 200 "ok\n". nginx
# needs a prefix directory for its pid and temp files; it gets a fresh one under $TMPDIR, which
# the benchmarks point into their own temp directory.
STATIC_START = r"""#!/bin/sh
set -e
port=$1
dir=$(mktemp -d "${TMPDIR:-/tmp}/ar-bench-backend.XXXXXX")
cat >"$dir/nginx.conf" <<EOF
daemon off;
master_process on;
worker_processes 1;
pid nginx.pid;
error_log stderr;
events { worker_connections 4096; }
http {
    access_log off;
    client_body_temp_path client_body_temp;
    proxy_temp_path proxy_temp;
    fastcgi_temp_path fastcgi_temp;
    uwsgi_temp_path uwsgi_temp;
    scgi_temp_path scgi_temp;
    server {
        listen 127.0.0.1:$port;
        location / { return 200 "ok\n"; }
    }
}
EOF
exec nginx -p "$dir/" -c "$dir/nginx.conf" -e stderr
"""


def static_repo(d):
    """A git repository, branch main, whose application is STATIC_START's nginx."""
    demo_repo(d, {"start": STATIC_START, "VERSION": "1\n"})


def branches(d, names):
    """Creates branches `names` at HEAD, cheaply (one update-ref for all)."""
    head = git(d, "rev-parse", "HEAD")
    stdin = "".join(f"create refs/heads/{n} {head}\n" for n in names)
    subprocess.run(["git", "update-ref", "--stdin"], cwd=d, input=stdin, text=True, check=True)


def sweep(tmp):
    """Kills every process whose working directory lies in `tmp`."""
    for p in os.listdir("/proc"):
        if p.isdigit():
            try:
                if os.readlink(f"/proc/{p}/cwd").startswith(tmp):
                    os.kill(int(p), signal.SIGKILL)
            except OSError:
                pass


def commit(d, name, text, msg):
    with open(os.path.join(d, name), "w") as f:
        f.write(text)
    git(d, "commit", "-q", "-am", msg)
    return git(d, "rev-parse", "HEAD")


def write_config(root, repo_url, alternates, base):
    """managed/etc for an approuter root on ports base (nginx), base+1/+2 (production) and from
    base+3 (alternates)."""
    etc = os.path.join(root, "managed/etc")
    os.makedirs(etc)
    with open(os.path.join(etc, "repo.conf"), "w") as f:
        f.write(repo_url + "\n")
    with open(os.path.join(etc, "alternates.conf"), "w") as f:
        f.write("".join(a + "\n" for a in alternates))
    with open(os.path.join(etc, "approuter.toml"), "w") as f:
        f.write(f"listen_port = {base}\nprod_ports = [{base + 1}, {base + 2}]\n"
                f"alternate_base_port = {base + 3}\nstop_grace_secs = 3\n")


def says_run(svc):
    """True when svc's supervise/stat says the service runs."""
    try:
        with open(os.path.join(svc, "supervise/stat")) as f:
            return f.read().startswith("run")
    except OSError:
        return False


class Env:
    """An approuter root in a temp dir, on free ports; shut down and swept on exit."""

    def __init__(self, exe, repo_url, alternates=(), prefix="ar-bench-"):
        self.exe = exe
        self.tmp = tempfile.mkdtemp(prefix=prefix)
        self.root = os.path.join(self.tmp, "root")
        base = free_block(4 + len(alternates))
        self.listen, self.prod, self.alt_base = base, (base + 1, base + 2), base + 3
        write_config(self.root, repo_url, alternates, base)

    def run(self, *args, check=True, env=None):
        return subprocess.run([self.exe, "--root", self.root, *args], capture_output=True, text=True,
                              check=check, env=env)

    def close(self):
        subprocess.run([self.exe, "--root", self.root, "shutdown"], capture_output=True)
        sweep(self.tmp)
        shutil.rmtree(self.tmp, ignore_errors=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def wrk(url, seconds, threads=2, conns=32, headers=()):
    """Runs wrk; returns (requests/s, p50 ms, p99 ms, non-2xx, socket errors, requests)."""
    cmd = ["wrk", "--latency", "-t", str(threads), "-c", str(conns), "-d", f"{seconds}s"]
    for h in headers:
        cmd += ["-H", h]
    out = subprocess.run(cmd + [url], capture_output=True, text=True, check=True).stdout
    return parse_wrk(out)


def parse_wrk(out):
    def ms(label):
        m = re.search(rf"^\s*{label}\s+([\d.]+)(us|ms|s)\s*$", out, re.M)
        if not m:
            return float("nan")
        v = float(m.group(1))
        return v / 1000 if m.group(2) == "us" else v * 1000 if m.group(2) == "s" else v
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    reqs = int(re.search(r"(\d+) requests in", out).group(1))
    non2xx = int((re.search(r"Non-2xx or 3xx responses: (\d+)", out) or [0, 0])[1])
    sock = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    errors = sum(int(x) for x in sock.groups()) if sock else 0
    return rps, ms("50%"), ms("99%"), non2xx, errors, reqs


def wait_http(port, path="/", timeout=30):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            s = socket.create_connection(("127.0.0.1", port), timeout=1)
            s.sendall(f"GET {path} HTTP/1.0\r\n\r\n".encode())
            if s.recv(12).startswith(b"HTTP/1.") and True:
                s.close()
                return True
        except OSError:
            pass
        time.sleep(0.01)
    return False


def loadavg():
    """The 1-minute load average, to print next to every result."""
    with open("/proc/loadavg") as f:
        return float(f.read().split()[0])


def settle(limit=None):
    """Waits up to `limit` seconds (SETTLE, default 120) for the 1-minute load average to fall
    below 1, so that one part's processes (a thousand services stopping) do not weigh on the next
    part's numbers. Returns the seconds waited."""
    limit = float(os.environ.get("SETTLE", "120")) if limit is None else limit
    waited = 0
    while loadavg() >= 1.0 and waited < limit:
        time.sleep(5)
        waited += 5
    return waited


def pss_kib(pid):
    """PSS of one process, from /proc/PID/smaps_rollup; 0 when it is gone."""
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Pss:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


HZ = os.sysconf("SC_CLK_TCK")


def _stat_fields(pid):
    """/proc/PID/stat's fields after the command name (which may hold spaces); None when gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            stat = f.read()
    except OSError:
        return None
    return stat[stat.rfind(")") + 2:].split()


def cpu_ticks(pid):
    """User plus system CPU time of one process, in clock ticks; 0 when it is gone."""
    fields = _stat_fields(pid)
    return int(fields[11]) + int(fields[12]) if fields else 0


def children(pid):
    """Pids whose parent is `pid`."""
    out = []
    for p in os.listdir("/proc"):
        if p.isdigit():
            fields = _stat_fields(p)
            if fields and int(fields[1]) == pid:
                out.append(int(p))
    return out


def comm(pid):
    try:
        with open(f"/proc/{pid}/comm") as f:
            return f.read().strip()
    except OSError:
        return ""


def wait(cond, timeout, interval=0.01):
    """Poll `cond` until it is true (True) or `timeout` seconds passed (False)."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if cond():
            return True
        time.sleep(interval)
    return False


def machine():
    """One line describing this machine, for the results."""
    cpu = "?"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    cores = os.cpu_count()
    mem = 0
    with open("/proc/meminfo") as f:
        mem = int(f.readline().split()[1]) // 1024 // 1024
    kernel = os.uname().release
    nginx = subprocess.run(["nginx", "-v"], capture_output=True, text=True).stderr.strip()
    return f"{cores} x {cpu}, {mem} GiB, Linux {kernel}, {nginx}"


def _busy_ticks():
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    # user nice system idle iowait irq softirq steal: busy is all but idle and iowait.
    return sum(v[:8]) - v[3] - v[4]


def _tree_ticks(tmp):
    total = 0
    for p in os.listdir("/proc"):
        if not p.isdigit():
            continue
        try:
            if not os.readlink(f"/proc/{p}/cwd").startswith(tmp):
                continue
        except OSError:
            continue
        total += cpu_ticks(p)
    return total


class OtherCpu:
    """How busy the machine was with other people's work while a measurement ran: all busy CPU
    time (/proc/stat) minus what the benchmark's own processes used (those whose working
    directory is in `tmp`, this process and its waited-for children such as wrk), as a percentage
    of all cores. Clock ticks are 10 ms: measure over a second or more.
    The load average cannot say this during a run, since the benchmark itself loads the machine.
    Processes that end during the measurement are not subtracted; measure around steady ones."""

    def __init__(self, tmp):
        import resource
        self.tmp, self.resource = tmp, resource
        self.hz = os.sysconf("SC_CLK_TCK")

    def _children(self):
        total = 0.0
        for who in (self.resource.RUSAGE_CHILDREN, self.resource.RUSAGE_SELF):
            r = self.resource.getrusage(who)
            total += r.ru_utime + r.ru_stime
        return total * self.hz

    def __enter__(self):
        self.t0 = time.monotonic()
        self.b0, self.o0, self.c0 = _busy_ticks(), _tree_ticks(self.tmp), self._children()
        return self

    def __exit__(self, *exc):
        wall = time.monotonic() - self.t0
        busy = _busy_ticks() - self.b0
        ours = _tree_ticks(self.tmp) - self.o0 + self._children() - self.c0
        self.percent = max(0.0, (busy - ours) / self.hz / wall / os.cpu_count() * 100)
