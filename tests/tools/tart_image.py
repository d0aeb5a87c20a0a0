#!/usr/bin/env python3
"""Build Tart-shaped OCI images by an independent path, and serve them (or
hostile variants of them) like a registry.

The Apple LZ4 encoder here shares no code with vmm's: it writes
  - all-zero 64 KiB blocks as "bv41" with one offset-1 match,
  - blocks whose every byte repeats the byte 65535 earlier as "bv41" blocks
    made of one match reaching into the previous block (linked blocks),
  - anything else as "bv4-" stored blocks,
and ends each layer with "bv4$", as Apple's framing requires.

  tart_image.py layout --out OUT --disk D --config C --nvram N --sizes 4194304,12582912,...
      write an OCI image layout (for `skopeo copy oci:OUT:TAG docker://...`);
      the layers' uncompressed sizes follow --sizes (the last one takes the rest)
  tart_image.py serve --port-file F --log L --disk D --config C --nvram N
                      [--sizes ...] [--mode MODE] [--repo NS] [--tag T]
      answer /v2/ requests for NS:T with that image, or a hostile variant:
        ok               the image as built
        manifest-not-json  the manifest is HTML
        blob-mismatch    disk layer 1's bytes do not match its digest
        truncated        disk layer 1 ends early (Content-Length tells the truth)
        lying-lz4        disk layer 1 decodes to bytes other than its annotation says
        absurd-size      the manifest announces a 2^50-byte disk layer
        huge-claim       a disk layer claims 10^15 uncompressed bytes
        missing-layer    the NVRAM blob answers 404
        not-lz4          disk layer 1 is an LZ4 *frame* (what some pushers wrongly send)
      Every request is logged as a JSON line: method, path, status.
  tart_image.py decode --in BLOB --out RAW
      decode an Apple LZ4 stream with this file's own LZ4 block decoder,
      refusing anything Apple's framing does not allow: unknown magics, bytes
      after "bv4$", blocks over 64 KiB, matches reaching further back than the
      previous block (Apple: "a compressed block may refer to data from the
      previous block"), sizes that do not add up.  Prints block statistics.
"""
import argparse
import hashlib
import http.server
import json
import os
import re
import struct
import sys
import threading

BLOCK = 65536


def lz4_len(n):
    out = bytearray()
    while n >= 255:
        out.append(255)
        n -= 255
    out.append(n)
    return bytes(out)


def lz4_match_block(literals, offset, match_len, tail):
    """One LZ4 block: literals, one match (offset, length), then tail literals."""
    lit = len(literals)
    ml = match_len - 4
    token = (min(lit, 15) << 4) | min(ml, 15)
    out = bytearray([token])
    if lit >= 15:
        out += lz4_len(lit - 15)
    out += literals
    out += struct.pack("<H", offset)
    if ml >= 15:
        out += lz4_len(ml - 15)
    out += bytes([min(len(tail), 15) << 4])
    if len(tail) >= 15:
        out += lz4_len(len(tail) - 15)
    out += tail
    return bytes(out)


def encode_layer(data, prev_tail=b""):
    """Apple LZ4 stream of data; prev_tail is unused (layers stand alone)."""
    out = bytearray()
    for start in range(0, len(data), BLOCK):
        blk = data[start:start + BLOCK]
        n = len(blk)
        if n > 16 and blk.count(0) == n:
            enc = lz4_match_block(b"\0", 1, n - 6, b"\0" * 5)
            out += b"bv41" + struct.pack("<II", n, len(enc)) + enc
        elif start >= BLOCK and n > 16 and blk[:n - 5] == data[start - 65535:start - 65535 + n - 5]:
            # every byte equals the one 65535 earlier: reach into the previous block
            enc = lz4_match_block(b"", 65535, n - 5, blk[n - 5:])
            out += b"bv41" + struct.pack("<II", n, len(enc)) + enc
        else:
            out += b"bv4-" + struct.pack("<I", n) + blk
    out += b"bv4$"
    return bytes(out)


def sha(b):
    return "sha256:" + hashlib.sha256(b).hexdigest()


def build(disk, config, nvram, sizes):
    """Blobs and the manifest of a Tart image, with layers cut at `sizes`."""
    data = open(disk, "rb").read()
    cfg = open(config, "rb").read()
    nv = open(nvram, "rb").read()
    blobs = {}
    layers = []

    def add(media, blob, annotations=None):
        d = sha(blob)
        blobs[d] = blob
        layers.append({"annotations": annotations or {}, "digest": d, "mediaType": media,
                       "size": len(blob)})

    add("application/vnd.cirruslabs.tart.config.v1", cfg)
    off = 0
    i = 0
    while off < len(data):
        n = sizes[i] if i < len(sizes) else len(data) - off
        n = min(n, len(data) - off)
        chunk = data[off:off + n]
        add("application/vnd.cirruslabs.tart.disk.v2", encode_layer(chunk), {
            "org.cirruslabs.tart.uncompressed-content-digest": sha(chunk),
            "org.cirruslabs.tart.uncompressed-size": str(n)})
        off += n
        i += 1
    add("application/vnd.cirruslabs.tart.nvram.v1", nv)
    oci_cfg = json.dumps({"architecture": "arm64", "config": {"Labels": {
        "org.cirruslabs.tart.disk.format": "raw"}}, "os": "linux"},
        separators=(",", ":"), sort_keys=True).encode()
    blobs[sha(oci_cfg)] = oci_cfg
    manifest = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "digest": sha(oci_cfg), "size": len(oci_cfg)},
        "layers": layers,
        "annotations": {"org.cirruslabs.tart.uncompressed-disk-size": str(len(data)),
                        "org.cirruslabs.tart.upload-time": "2024-03-01T10:00:00Z"},
    }
    return blobs, manifest


def hostile(blobs, manifest, mode):
    """Return (blobs, manifest bytes, missing digests) for a mode."""
    blobs = dict(blobs)
    disk = [l for l in manifest["layers"] if l["mediaType"].endswith("disk.v2")]
    target = disk[1] if len(disk) > 1 else disk[0]
    missing = set()
    if mode == "blob-mismatch":
        b = bytearray(blobs[target["digest"]])
        b[len(b) // 2] ^= 0x40
        blobs[target["digest"]] = bytes(b)
    elif mode == "truncated":
        blobs[target["digest"]] = blobs[target["digest"]][:len(blobs[target["digest"]]) // 2]
    elif mode == "lying-lz4":
        # a valid stream with a valid digest, yielding other bytes than announced
        n = int(target["annotations"]["org.cirruslabs.tart.uncompressed-size"])
        fake = encode_layer(b"\x01" * n)
        del blobs[target["digest"]]
        target["digest"] = sha(fake)
        target["size"] = len(fake)
        blobs[target["digest"]] = fake
    elif mode == "absurd-size":
        target["size"] = 1 << 50
    elif mode == "huge-claim":
        target["annotations"]["org.cirruslabs.tart.uncompressed-size"] = str(10 ** 15)
        manifest["annotations"].pop("org.cirruslabs.tart.uncompressed-disk-size", None)
    elif mode == "missing-layer":
        nv = [l for l in manifest["layers"] if l["mediaType"].endswith("nvram.v1")][0]
        missing.add(nv["digest"])
    elif mode == "not-lz4":
        frame = b"\x04\x22\x4d\x18\x64\x40\xa7" + b"\x00" * 100000
        del blobs[target["digest"]]
        target["digest"] = sha(frame)
        target["size"] = len(frame)
        blobs[target["digest"]] = frame
    body = json.dumps(manifest, separators=(",", ":")).encode()
    if mode == "manifest-not-json":
        body = b"<html><body>502 Bad Gateway</body></html>"
    return blobs, body, missing


def write_layout(out, blobs, manifest, tag):
    os.makedirs(os.path.join(out, "blobs", "sha256"), exist_ok=True)
    body = json.dumps(manifest, separators=(",", ":")).encode()
    for d, b in list(blobs.items()) + [(sha(body), body)]:
        with open(os.path.join(out, "blobs", "sha256", d[7:]), "wb") as f:
            f.write(b)
    with open(os.path.join(out, "oci-layout"), "w") as f:
        json.dump({"imageLayoutVersion": "1.0.0"}, f)
    with open(os.path.join(out, "index.json"), "w") as f:
        json.dump({"schemaVersion": 2, "manifests": [{
            "mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": sha(body),
            "size": len(body), "annotations": {"org.opencontainers.image.ref.name": tag}}]}, f)
    print(sha(body))


def lz4_block_decode(src, out, block_start, prev_start, size):
    """Decode one raw LZ4 block appending to out; matches may reach back to prev_start."""
    i, n = 0, len(src)
    end = block_start + size
    linked = False
    while True:
        if i >= n:
            raise ValueError("block ends inside a sequence")
        token = src[i]
        i += 1
        lit = token >> 4
        if lit == 15:
            while True:
                b = src[i]
                i += 1
                lit += b
                if b != 255:
                    break
        out += src[i:i + lit]
        if i + lit > n:
            raise ValueError("literals run past the block")
        i += lit
        if i == n:
            break  # the last sequence has no match
        off = src[i] | src[i + 1] << 8
        i += 2
        ml = (token & 15) + 4
        if token & 15 == 15:
            while True:
                b = src[i]
                i += 1
                ml += b
                if b != 255:
                    break
        start = len(out) - off
        if off == 0 or start < prev_start:
            raise ValueError("match offset %d reaches before the previous block" % off)
        if start < block_start:
            linked = True
        for k in range(ml):  # byte by byte: overlapping copies repeat
            out.append(out[start + k])
        if len(out) > end:
            raise ValueError("block decodes past its size")
    if len(out) != end:
        raise ValueError("block decodes to %d bytes, header says %d" % (len(out) - block_start, size))
    return linked


def decode_stream(data):
    out = bytearray()
    stats = {"bv41": 0, "bv4-": 0, "linked": 0}
    i = 0
    prev_start = 0
    while True:
        magic = data[i:i + 4]
        if magic == b"bv4$":
            if i + 4 != len(data):
                raise ValueError("bytes after the end marker")
            return bytes(out), stats
        if magic == b"bv41":
            d, e = struct.unpack("<II", data[i + 4:i + 12])
            if d > BLOCK:
                raise ValueError("block of %d bytes" % d)
            start = len(out)
            if lz4_block_decode(data[i + 12:i + 12 + e], out, start, prev_start, d):
                stats["linked"] += 1
            i += 12 + e
        elif magic == b"bv4-":
            (d,) = struct.unpack("<I", data[i + 4:i + 8])
            if d > BLOCK:
                raise ValueError("stored block of %d bytes" % d)
            start = len(out)
            out += data[i + 8:i + 8 + d]
            i += 8 + d
        else:
            raise ValueError("unknown magic %r at %d" % (magic, i))
        stats[magic.decode()] += 1
        prev_start = start


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *a):
        pass

    def reply(self, status, body=b"", ctype="application/json", extra=()):
        with open(self.server.args.log, "a") as f:
            f.write(json.dumps({"method": self.command, "path": self.path, "status": status}) + "\n")
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        for k, v in extra:
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def do_GET(self):
        s = self.server
        ns = re.escape(s.args.repo)
        if self.path == "/v2/":
            return self.reply(200, b"{}")
        m = re.fullmatch(r"/v2/%s/manifests/([^/]+)" % ns, self.path)
        if m:
            if m.group(1) not in (s.args.tag, sha(s.manifest_body)):
                return self.reply(404, b'{"errors":[{"code":"MANIFEST_UNKNOWN"}]}')
            return self.reply(200, s.manifest_body, "application/vnd.oci.image.manifest.v1+json",
                              [("Docker-Content-Digest", sha(s.manifest_body))])
        m = re.fullmatch(r"/v2/%s/blobs/(sha256:[0-9a-f]{64})" % ns, self.path)
        if m and m.group(1) in s.blobs and m.group(1) not in s.missing:
            body = s.blobs[m.group(1)]
            rng = self.headers.get("Range")
            if rng:
                start = int(re.match(r"bytes=(\d+)-", rng).group(1))
                part = body[start:]
                return self.reply(206, part, "application/octet-stream",
                                  [("Content-Range", "bytes %d-%d/%d" % (start, len(body) - 1, len(body)))])
            return self.reply(200, body, "application/octet-stream")
        return self.reply(404, b'{"errors":[{"code":"BLOB_UNKNOWN"}]}')

    do_HEAD = do_GET


def main():
    p = argparse.ArgumentParser()
    p.add_argument("cmd", choices=["layout", "serve", "decode"])
    p.add_argument("--in", dest="inp")
    p.add_argument("--out", help="layout: the directory to write")
    p.add_argument("--disk")
    p.add_argument("--config")
    p.add_argument("--nvram")
    p.add_argument("--sizes", default="")
    p.add_argument("--tag", default="latest")
    p.add_argument("--repo", default="tart/image")
    p.add_argument("--mode", default="ok")
    p.add_argument("--port-file")
    p.add_argument("--log", default="/dev/null")
    a = p.parse_args()
    if a.cmd == "decode":
        raw, stats = decode_stream(open(a.inp, "rb").read())
        open(a.out, "wb").write(raw)
        print(json.dumps(stats))
        return
    sizes = [int(x) for x in a.sizes.split(",") if x]
    blobs, manifest = build(a.disk, a.config, a.nvram, sizes)
    if a.cmd == "layout":
        write_layout(a.out, blobs, manifest, a.tag)
        return
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    srv.args = a
    srv.blobs, srv.manifest_body, srv.missing = hostile(blobs, manifest, a.mode)
    with open(a.port_file + ".tmp", "w") as f:
        f.write(str(srv.server_address[1]))
    os.rename(a.port_file + ".tmp", a.port_file)
    srv.serve_forever()


if __name__ == "__main__":
    main()
