"""Shared pieces of the test servers in tests/tools (python3 from Debian, stdlib only).

- serve(): bind 127.0.0.x:0, write the chosen port to --port-file (atomically), serve
  threaded until SIGTERM.
- Proxy: an HTTP/1.1 handler that forwards every request to an upstream registry,
  keeping the client's Host header so the registry builds Location URLs that point
  back through the proxy.  Subclasses hook responses (cut them, redirect them).
- log_json(): append one JSON object per line to a log file the tests read.
"""
import http.client
import http.server
import json
import os
import signal
import socketserver
import sys
import threading

_log_lock = threading.Lock()


def log_json(path, obj):
    if not path:
        return
    with _log_lock:
        with open(path, "a") as f:
            f.write(json.dumps(obj, sort_keys=True) + "\n")


class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
    allow_reuse_address = True


def write_port_file(path, port):
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write("%d\n" % port)
    os.rename(tmp, path)


def serve(servers_and_portfiles):
    """Start each (server, port_file) pair; block until SIGTERM/SIGINT."""
    for srv, port_file in servers_and_portfiles:
        threading.Thread(target=srv.serve_forever, daemon=True).start()
        write_port_file(port_file, srv.server_address[1])
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *a: stop.set())
    signal.signal(signal.SIGINT, lambda *a: stop.set())
    while not stop.is_set():
        stop.wait(1)
    sys.exit(0)


HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade",
              "proxy-authorization", "proxy-authenticate"}


class Proxy(http.server.BaseHTTPRequestHandler):
    """Forward to self.server.upstream ("host:port").  Subclasses override on_response()."""

    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):  # quiet: the tests read the JSON logs
        pass

    def read_body(self):
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            data = b""
            while True:
                size = int(self.rfile.readline().split(b";")[0], 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return data
                data += self.rfile.read(size)
                self.rfile.readline()
        n = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(n) if n else b""

    def forward(self, body):
        conn = http.client.HTTPConnection(self.server.upstream, timeout=60)
        headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP}
        if body or self.command in ("PUT", "POST", "PATCH"):
            headers["Content-Length"] = str(len(body))
        conn.request(self.command, self.path, body=body or None, headers=headers)
        resp = conn.getresponse()
        data = resp.read() if self.command != "HEAD" else b""
        conn.close()
        return resp.status, resp.getheaders(), data

    def send(self, status, headers, data, head=False):
        self.send_response(status)
        has_len = False
        for k, v in headers:
            if k.lower() in HOP_BY_HOP:
                continue
            if k.lower() == "content-length":
                if head:
                    self.send_header(k, v)
                has_len = True
                continue
            self.send_header(k, v)
        if not head:
            self.send_header("Content-Length", str(len(data)))
        elif not has_len:
            self.send_header("Content-Length", "0")
        self.end_headers()
        if not head and data:
            self.wfile.write(data)

    def handle_any(self):
        body = self.read_body()
        status, headers, data = self.forward(body)
        self.on_response(status, headers, data)

    def on_response(self, status, headers, data):
        self.send(status, headers, data, head=self.command == "HEAD")

    # late binding, so that subclasses' handle_any() is the one called
    def do_GET(self):
        self.handle_any()

    do_HEAD = do_PUT = do_POST = do_PATCH = do_DELETE = do_GET
