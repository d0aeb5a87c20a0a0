#!/usr/bin/env python3
"""A registry front that redirects blob downloads to a second server, as registries
with object storage do (S3, GCS, a CDN).

The front (--listen, default 127.0.0.1) forwards every request to --upstream.  When a
blob GET is answered 200 or 206 by the registry (so it was authorised there), the front
answers `307 Location: http://<blob-host>:<port>/blobs/<digest>?sig=...` instead of
the bytes.  The blob server listens on --blob-host (default 127.0.0.2: another
address, so another origin) and serves the blob from the registry's storage
directory (--storage, the `rootdirectory` of the filesystem driver), with Range.
It records the headers of every request it gets to --log, one JSON line each:
  {"path", "headers": {name: value}}
so a test can prove no Authorization header reached it.

  redirect_server.py --port-file F --blob-port-file G --upstream H:P --storage DIR --log L
"""
import argparse
import os
import re

import toollib


class Front(toollib.Proxy):
    def handle_any(self):
        body = self.read_body()
        status, headers, data = self.forward(body)
        m = re.search(r"/blobs/(sha256:[0-9a-f]{64})$", self.path.split("?")[0])
        if self.command in ("GET", "HEAD") and m and status in (200, 206):
            loc = "http://%s:%d/blobs/%s?sig=%s" % (
                self.server.blob_host, self.server.blob_port, m.group(1), os.urandom(8).hex())
            self.send(307, [("Location", loc), ("Content-Type", "text/plain")],
                      b"redirecting to storage\n", head=self.command == "HEAD")
            return
        self.send(status, headers, data, head=self.command == "HEAD")


class Blobs(toollib.Proxy):
    def handle_any(self):
        toollib.log_json(self.server.log, {"method": self.command, "path": self.path,
                                           "headers": dict(self.headers.items())})
        m = re.match(r"/blobs/sha256:([0-9a-f]{64})(\?.*)?$", self.path)
        if self.command not in ("GET", "HEAD") or not m:
            self.send(404, [], b"no such blob\n")
            return
        hexd = m.group(1)
        path = os.path.join(self.server.storage, "docker/registry/v2/blobs/sha256",
                            hexd[:2], hexd, "data")
        try:
            with open(path, "rb") as f:
                data = f.read()
        except OSError:
            self.send(404, [], b"no such blob\n")
            return
        rng = self.headers.get("Range")
        status, hdrs = 200, [("Content-Type", "application/octet-stream")]
        if rng:
            r = re.match(r"bytes=(\d+)-$", rng)
            start = int(r.group(1)) if r else 0
            hdrs.append(("Content-Range", "bytes %d-%d/%d" % (start, len(data) - 1, len(data))))
            data, status = data[start:], 206
        self.send(status, hdrs, data, head=self.command == "HEAD")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port-file", required=True)
    ap.add_argument("--blob-port-file", required=True)
    ap.add_argument("--listen", default="127.0.0.1")
    ap.add_argument("--blob-host", default="127.0.0.2")
    ap.add_argument("--upstream", required=True)
    ap.add_argument("--storage", required=True)
    ap.add_argument("--log", required=True)
    args = ap.parse_args()
    blobs = toollib.Server((args.blob_host, 0), Blobs)
    blobs.log = args.log
    blobs.storage = args.storage
    front = toollib.Server((args.listen, 0), Front)
    front.upstream = args.upstream
    front.blob_host = args.blob_host
    front.blob_port = blobs.server_address[1]
    toollib.serve([(blobs, args.blob_port_file), (front, args.port_file)])


if __name__ == "__main__":
    main()
