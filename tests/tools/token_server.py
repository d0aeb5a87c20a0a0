#!/usr/bin/env python3
"""A Docker token server for the tests (the distribution registry's `auth: token` mode).

GET /token?service=S&scope=repository:NAME:ACTIONS[&scope=...] with optional
`Authorization: Basic`.  Answers {"token", "access_token", "expires_in", "issued_at"}
where the token is a JWT signed RS256 with --key, its header carrying --cert as
`x5c` (the registry trusts it through `rootcertbundle`).

Access: a user given with --user NAME:PASSWORD gets the pull/push/delete actions it
asks for; --readonly NAME:PASSWORD gets pull only; anonymous requests get pull when
--anonymous-pull is set and nothing otherwise; a wrong password is 401.
Every request is appended to --log as one JSON line
{"user", "scopes", "granted", "status", "service"} so tests can assert what was asked.
--fail-first N answers the first N requests with 503.

  token_server.py --port-file F --key K --cert C [--tls-cert C --tls-key K] ...
"""
import argparse
import base64
import datetime
import json
import os
import ssl
import threading
import time
import urllib.parse

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding

import toollib


def b64url(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def make_jwt(key, cert_der, claims):
    header = {"typ": "JWT", "alg": "RS256", "x5c": [base64.b64encode(cert_der).decode()]}
    signing_input = b64url(json.dumps(header).encode()) + "." + b64url(json.dumps(claims).encode())
    sig = key.sign(signing_input.encode(), padding.PKCS1v15(), hashes.SHA256())
    return signing_input + "." + b64url(sig)


class Handler(toollib.Proxy):
    def deny(self, status, msg):
        body = json.dumps({"errors": [{"code": "UNAUTHORIZED" if status == 401 else "DENIED",
                                       "message": msg}]}).encode()
        self.send_response(status)
        if status == 401:
            self.send_header("WWW-Authenticate", 'Basic realm="vmm-test-token"')
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        srv = self.server
        url = urllib.parse.urlsplit(self.path)
        q = urllib.parse.parse_qs(url.query, keep_blank_values=True)
        scopes = q.get("scope", [])
        service = (q.get("service") or [""])[0]
        entry = {"path": url.path, "service": service, "scopes": scopes, "user": None,
                 "basic": "Authorization" in self.headers}
        with srv.lock:
            srv.count += 1
            n = srv.count
        if n <= srv.args.fail_first:
            entry["status"] = 503
            toollib.log_json(srv.args.log, entry)
            self.deny(503, "try again")
            return
        if url.path != "/token":
            entry["status"] = 404
            toollib.log_json(srv.args.log, entry)
            self.deny(404, "not found")
            return
        user, allowed = None, {"pull"} if srv.args.anonymous_pull else set()
        auth = self.headers.get("Authorization")
        if auth:
            if not auth.startswith("Basic "):
                entry["status"] = 401
                toollib.log_json(srv.args.log, entry)
                self.deny(401, "basic authentication required")
                return
            try:
                user, _, password = base64.b64decode(auth[6:]).decode().partition(":")
            except Exception:
                user, password = "", None
            entry["user"] = user
            if srv.users.get(user) == password:
                allowed = {"pull", "push", "delete"}
            elif srv.readonly.get(user) == password:
                allowed = {"pull"}
            else:
                entry["status"] = 401
                toollib.log_json(srv.args.log, entry)
                self.deny(401, "invalid username or password")
                return
        access, granted = [], []
        for s in scopes:
            for item in s.split(" "):
                parts = item.split(":")
                if len(parts) < 3:
                    continue
                typ, name, actions = parts[0], ":".join(parts[1:-1]), parts[-1].split(",")
                ok = [a for a in actions if a in allowed]
                access.append({"type": typ, "name": name, "actions": ok})
                granted.append("%s:%s:%s" % (typ, name, ",".join(ok)))
        now = int(time.time())
        claims = {"iss": srv.args.issuer, "sub": user or "", "aud": service,
                  "exp": now + srv.args.expires_in, "nbf": now - 1, "iat": now,
                  "jti": b64url(os.urandom(12)), "access": access}
        token = make_jwt(srv.key, srv.cert_der, claims)
        issued = datetime.datetime.fromtimestamp(now, datetime.timezone.utc)
        body = json.dumps({"token": token, "access_token": token,
                           "expires_in": srv.args.expires_in,
                           "issued_at": issued.strftime("%Y-%m-%dT%H:%M:%SZ")}).encode()
        entry["status"] = 200
        entry["granted"] = granted
        toollib.log_json(srv.args.log, entry)
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def pairs(items):
    out = {}
    for it in items or []:
        u, _, p = it.partition(":")
        out[u] = p
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port-file", required=True)
    ap.add_argument("--listen", default="127.0.0.1")
    ap.add_argument("--key", required=True)
    ap.add_argument("--cert", required=True)
    ap.add_argument("--tls-cert")
    ap.add_argument("--tls-key")
    ap.add_argument("--issuer", default="vmm-test-issuer")
    ap.add_argument("--user", action="append")
    ap.add_argument("--readonly", action="append")
    ap.add_argument("--anonymous-pull", action="store_true")
    ap.add_argument("--expires-in", type=int, default=300)
    ap.add_argument("--fail-first", type=int, default=0)
    ap.add_argument("--log")
    args = ap.parse_args()

    srv = toollib.Server((args.listen, 0), Handler)
    srv.args = args
    srv.lock = threading.Lock()
    srv.count = 0
    srv.users = pairs(args.user)
    srv.readonly = pairs(args.readonly)
    with open(args.key, "rb") as f:
        srv.key = serialization.load_pem_private_key(f.read(), password=None)
    with open(args.cert, "rb") as f:
        srv.cert_der = x509.load_pem_x509_certificate(f.read()).public_bytes(
            serialization.Encoding.DER)
    if args.tls_cert:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(args.tls_cert, args.tls_key)
        srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
    toollib.serve([(srv, args.port_file)])


if __name__ == "__main__":
    main()
