#!/usr/bin/python3
"""A guest agent for vmm's tests: Tart's guest-agent protocol (gRPC over plain
HTTP/2 on a Unix socket) served by Debian's python3-grpcio, with message
classes that python3-grpc-tools' protoc generates from tests/tools/agent.proto
at start-up.  Written from the protocol's facts, not from the Go agent.

  agent_server.py --socket PATH [--ip ADDR] [--cwd DIR] [--ready FILE]

Exec runs the command on this host (in --cwd): standard output and error in
4 KiB chunks, standard input when interactive (an empty chunk closes it; with
a pseudo-terminal it is sent as ^D), terminal sizes for -t, then the exit code
(-1 when a signal killed it).  A command that cannot be started fails the call
with UNKNOWN.  ResolveIP answers --ip, or fails when none was given.
"""
import argparse
import fcntl
import os
import pty
import queue
import struct
import subprocess
import sys
import tempfile
import termios
import threading
from concurrent import futures

import grpc
from grpc_tools import protoc

HERE = os.path.dirname(os.path.abspath(__file__))


def compile_proto():
    out = tempfile.mkdtemp(prefix="vmm-agent-pb.")
    rc = protoc.main(["protoc", "-I" + HERE, "--python_out=" + out,
                      "--grpc_python_out=" + out, os.path.join(HERE, "agent.proto")])
    if rc != 0:
        sys.exit("protoc failed")
    sys.path.insert(0, out)
    import agent_pb2
    import agent_pb2_grpc
    return agent_pb2, agent_pb2_grpc


pb, pb_grpc = compile_proto()


def set_size(fd, size):
    if size.rows and size.cols:
        fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", size.rows, size.cols, 0, 0))


class Agent(pb_grpc.AgentServicer):
    def __init__(self, ip, cwd):
        self.ip, self.cwd = ip, cwd

    def ResolveIP(self, request, context):
        if not self.ip:
            context.abort(grpc.StatusCode.UNAVAILABLE, "cannot resolve VM's IP address")
        return pb.ResolveIPResponse(ip=self.ip)

    def Exec(self, requests, context):
        first = next(requests, None)
        if first is None or first.WhichOneof("type") != "command":
            context.abort(grpc.StatusCode.INVALID_ARGUMENT,
                          "first exec request should describe a command to execute")
        c = first.command
        argv = [c.name] + list(c.args)
        out = queue.Queue()
        master = None
        try:
            if c.tty:
                master, slave = pty.openpty()
                set_size(slave, c.terminal_size)

                def ctty():
                    os.setsid()
                    fcntl.ioctl(0, termios.TIOCSCTTY, 0)
                p = subprocess.Popen(argv, stdin=slave, stdout=slave, stderr=slave,
                                     cwd=self.cwd, preexec_fn=ctty, close_fds=True)
                os.close(slave)
                streams = [(master, "standard_output")]
                stdin = master if c.interactive else None
            else:
                p = subprocess.Popen(argv, cwd=self.cwd, close_fds=True,
                                     stdin=subprocess.PIPE if c.interactive else subprocess.DEVNULL,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE)
                streams = [(p.stdout.fileno(), "standard_output"),
                           (p.stderr.fileno(), "standard_error")]
                stdin = p.stdin
        except OSError as e:
            context.abort(grpc.StatusCode.UNKNOWN, 'exec: "%s": %s' % (c.name, e.strerror))

        def read(fd, field):
            while True:
                try:
                    data = os.read(fd, 4096)
                except OSError:  # EIO: a pseudo-terminal's end
                    data = b""
                if not data:
                    out.put(None)
                    return
                out.put(pb.ExecResponse(**{field: pb.IOChunk(data=data)}))

        def feed():
            try:
                for r in requests:
                    kind = r.WhichOneof("type")
                    if kind == "standard_input" and stdin is not None:
                        write_input(r.standard_input.data)
                    elif kind == "terminal_resize" and master is not None:
                        set_size(master, r.terminal_resize)
            except grpc.RpcError:  # the client went away: the call is over
                pass

        def write_input(data):
            try:
                if master is not None:
                    os.write(master, data or b"\x04")
                elif data:
                    stdin.write(data)
                    stdin.flush()
                else:
                    stdin.close()
            except (OSError, ValueError):
                pass

        for fd, field in streams:
            threading.Thread(target=read, args=(fd, field), daemon=True).start()
        threading.Thread(target=feed, daemon=True).start()
        open_streams = len(streams)
        while open_streams:
            item = out.get()
            if item is None:
                open_streams -= 1
            else:
                yield item
        code = p.wait()
        if master is not None:
            os.close(master)
        yield pb.ExecResponse(exit=pb.ExecResponse.Exit(code=code if code >= 0 else -1))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--socket", required=True)
    ap.add_argument("--ip")
    ap.add_argument("--cwd", default=os.getcwd())
    ap.add_argument("--ready")
    a = ap.parse_args()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=16))
    pb_grpc.add_AgentServicer_to_server(Agent(a.ip, a.cwd), server)
    server.add_insecure_port("unix:" + os.path.abspath(a.socket))
    server.start()
    if a.ready:
        open(a.ready, "w").close()
    server.wait_for_termination()


if __name__ == "__main__":
    main()
