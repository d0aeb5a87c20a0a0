#!/usr/bin/env python3
"""A fault-injecting HTTP proxy in front of a test registry.

Forwards everything to --upstream (keeping Host, so the registry's Location URLs
point back here) and injects faults:

  --cut-after N      a blob GET (GET /v2/.../blobs/sha256:...) answered 200/206 sends
                     its headers (with the full Content-Length) and only N body bytes,
                     then the connection is closed: an interrupted download
  --cut-times K      how many blob GETs to cut (default 1)
  --stall            instead of closing after N bytes, stop sending and hold the
                     connection open (for the client's stall timeout)
  --fail-first N     the first N requests whose path matches --fail-path (regex,
                     default: everything) get --fail-status (503) with
                     `Retry-After: --retry-after` when that is given
  --challenge S      answer every request with 401 and `WWW-Authenticate: S`
                     (a broken challenge)
  --ignore-range     drop the Range header before forwarding, so the registry
                     answers 200 with the whole blob (servers that ignore Range)
  --set-cookie       add `Set-Cookie: session=...` to every answer (a client that
                     keeps cookies sends them back; see "cookie" in the log)
  --manifest-body F  answer GET/HEAD of any manifest with 200 and the bytes of F
                     (Content-Type: the OCI manifest type; no Docker-Content-Digest)
  --blob-body F      answer GET of any blob with 200 and the bytes of F
                     (hostile registries: wrong digests, absurd sizes, garbage)

Every request is logged to --log as one JSON line:
  {"method", "path", "range", "status", "sent", "cut", "authorization", "cookie"}
where "sent" is the body bytes sent and "authorization"/"cookie" whether those
headers came.
"""
import argparse
import re
import threading
import time

import toollib


class Handler(toollib.Proxy):
    def entry(self, status, sent, cut=False):
        toollib.log_json(self.server.args.log, {
            "method": self.command, "path": self.path,
            "range": getattr(self, "asked_range", self.headers.get("Range")), "status": status, "sent": sent, "cut": cut,
            "authorization": "Authorization" in self.headers,
            "cookie": "Cookie" in self.headers})

    def send(self, status, headers, data, head=False):
        if self.server.args.set_cookie:
            headers = list(headers) + [("Set-Cookie", "session=vmm-test; Path=/")]
        super().send(status, headers, data, head)

    def serve_file(self, path, content_type):
        with open(path, "rb") as f:
            data = f.read()
        self.entry(200, 0 if self.command == "HEAD" else len(data))
        self.send(200, [("Content-Type", content_type)], data, head=self.command == "HEAD")

    def handle_any(self):
        srv, a = self.server, self.server.args
        body = self.read_body()
        if a.challenge is not None:
            self.entry(401, 0)
            self.send(401, [("WWW-Authenticate", a.challenge),
                            ("Content-Type", "application/json")], b'{"errors":[]}',
                      head=self.command == "HEAD")
            return
        bare = self.path.split("?")[0]
        if a.manifest_body and "/manifests/" in bare and self.command in ("GET", "HEAD"):
            self.serve_file(a.manifest_body, "application/vnd.oci.image.manifest.v1+json")
            return
        if a.blob_body and re.search(r"/blobs/sha256:", bare) and self.command == "GET":
            self.serve_file(a.blob_body, "application/octet-stream")
            return
        if a.fail_first and re.search(a.fail_path, self.path):
            with srv.lock:
                srv.failed += 1
                fail = srv.failed <= a.fail_first
            if fail:
                hdrs = [("Content-Type", "application/json")]
                if a.retry_after is not None:
                    hdrs.append(("Retry-After", a.retry_after))
                self.entry(a.fail_status, 0)
                self.send(a.fail_status, hdrs,
                          b'{"errors":[{"code":"UNAVAILABLE","message":"injected"}]}',
                          head=self.command == "HEAD")
                return
        self.asked_range = self.headers.get("Range")
        if a.ignore_range and "Range" in self.headers:
            del self.headers["Range"]
        status, headers, data = self.forward(body)
        blob_get = self.command == "GET" and re.search(r"/blobs/sha256:[0-9a-f]{64}$",
                                                       self.path.split("?")[0])
        cut = False
        if blob_get and status in (200, 206) and a.cut_after is not None and \
                len(data) > a.cut_after:
            with srv.lock:
                if srv.cuts < a.cut_times:
                    srv.cuts += 1
                    cut = True
        if not cut:
            self.entry(status, len(data))
            self.send(status, headers, data, head=self.command == "HEAD")
            return
        # headers promise everything; the body stops after cut_after bytes
        self.send_response(status)
        for k, v in headers:
            if k.lower() not in toollib.HOP_BY_HOP:
                self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data[:a.cut_after])
        self.wfile.flush()
        self.entry(status, a.cut_after, cut=True)
        if a.stall:
            time.sleep(a.stall_seconds)
        self.close_connection = True
        try:
            self.connection.shutdown(2)
        except OSError:
            pass


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port-file", required=True)
    ap.add_argument("--listen", default="127.0.0.1")
    ap.add_argument("--upstream", required=True)
    ap.add_argument("--cut-after", type=int)
    ap.add_argument("--cut-times", type=int, default=1)
    ap.add_argument("--stall", action="store_true")
    ap.add_argument("--stall-seconds", type=float, default=120)
    ap.add_argument("--fail-first", type=int, default=0)
    ap.add_argument("--fail-path", default="")
    ap.add_argument("--fail-status", type=int, default=503)
    ap.add_argument("--retry-after")
    ap.add_argument("--challenge")
    ap.add_argument("--set-cookie", action="store_true")
    ap.add_argument("--ignore-range", action="store_true")
    ap.add_argument("--manifest-body")
    ap.add_argument("--blob-body")
    ap.add_argument("--log")
    args = ap.parse_args()
    srv = toollib.Server((args.listen, 0), Handler)
    srv.args = args
    srv.upstream = args.upstream
    srv.lock = threading.Lock()
    srv.cuts = 0
    srv.failed = 0
    toollib.serve([(srv, args.port_file)])


if __name__ == "__main__":
    main()
