#!/usr/bin/env python3
"""approuter's demo application.

GET /            -> a page naming its branch, version, instance and pid
GET /diagnostic  -> 200 "ok", or the status written in the file HEALTH (e.g. 500) if present
With a file TICK_MS (e.g. 5), it also prints "tick <pid> <n>" every so many milliseconds, n
counting from 1: a gap-free sequence in its log shows that no line was lost.
GET /echo with "Upgrade: websocket" -> 101, then every byte sent comes back (a tunnel, enough to
                  see an upgraded connection pass through nginx; not a WebSocket implementation)
POST (any path)  -> 200 "received N bytes": the body is read whole, so uploads can be tested
GET /headers     -> the request's headers as nginx passed them, one "Name: value" per line
With a file SERVED_BY, every answer carries "X-Served-By: <its text>": an application that
claims to be another instance (nginx must not let it through).
"""
import http.server
import os
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))


def read(name, default=""):
    try:
        with open(os.path.join(HERE, name)) as f:
            return f.read().strip()
    except OSError:
        return default


BRANCH = read("BRANCH", "unknown")
VERSION = read("VERSION", "0")
INSTANCE = os.environ.get("APPROUTER_INSTANCE", "?")
HEALTH = int(read("HEALTH", "200") or "200")
TICK_MS = int(read("TICK_MS", "0") or "0")
SERVED_BY = read("SERVED_BY")


def say(line):
    """One line to stdout in one write: lines from several threads never mix."""
    os.write(1, (line + "\n").encode())


def tick():
    n = 0
    while True:
        n += 1
        say(f"tick {os.getpid()} {n}")
        time.sleep(TICK_MS / 1000)


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # The 101 of a tunnel leaves in its own write; with Nagle's algorithm on, a kept-alive
    # connection could wait for a delayed ACK (40 ms).
    disable_nagle_algorithm = True

    def do_GET(self):
        if self.headers.get("Upgrade", "").lower() == "websocket":
            return self.tunnel()
        status = 200
        if self.path == "/headers":
            body = "".join(f"{k}: {v}\n" for k, v in self.headers.items())
            return self.answer(200, body, "text/plain; charset=utf-8")
        if self.path.startswith("/diagnostic"):
            status = HEALTH
            body = f"{'ok' if status == 200 else 'unhealthy'}\n"
        else:
            body = (
                "<!doctype html><title>approuter demo</title>\n"
                f"<h1>demo app: branch {BRANCH}, version {VERSION}</h1>\n"
                f"<p>served by {INSTANCE} (pid {os.getpid()})</p>\n"
            )
        self.answer(status, body, "text/html; charset=utf-8")

    def do_POST(self):
        length = int(self.headers.get("Content-Length", "0") or "0")
        left = length
        while left > 0:
            chunk = self.rfile.read(min(left, 1 << 16))
            if not chunk:
                break
            left -= len(chunk)
        self.answer(200, f"received {length - left} bytes\n", "text/plain; charset=utf-8")

    def answer(self, status, body, content_type):
        """Headers and body in one write: an answer is never seen half-sent."""
        data = body.encode()
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.send_header("X-App-Version", VERSION)
        self.send_header("X-App-Branch", BRANCH)
        if SERVED_BY:
            self.send_header("X-Served-By", SERVED_BY)
        self._headers_buffer.append(b"\r\n" + data)
        self.flush_headers()

    def tunnel(self):
        self.send_response(101)
        self.send_header("Upgrade", "websocket")
        self.send_header("Connection", "Upgrade")
        self.end_headers()
        self.wfile.flush()
        while True:
            data = self.connection.recv(4096)
            if not data:
                break
            self.connection.sendall(data)
        self.close_connection = True

    def log_message(self, fmt, *args):
        say("%s %s" % (self.address_string(), fmt % args))


class Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128

    def handle_error(self, request, client_address):
        # A client that hangs up mid-answer is routine, not a traceback.
        if isinstance(sys.exc_info()[1], (ConnectionError, BrokenPipeError)):
            return
        super().handle_error(request, client_address)


if __name__ == "__main__":
    port = int(sys.argv[1])
    say(f"demo app {BRANCH} version {VERSION} listening on 127.0.0.1:{port}")
    if TICK_MS > 0:
        threading.Thread(target=tick, daemon=True).start()
    Server(("127.0.0.1", port), Handler).serve_forever()
