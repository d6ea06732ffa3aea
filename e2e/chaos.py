"""Faults for the chaos suite (tests/e2e/test_chaos.py): restart a control-plane component by PID,
and a small HTTP proxy in front of Prometheus that can be made down or slow.

Every process touched here is one the harness started (e2e/proc.py records them) or kwokctl
started for it (its PID files, e2e/cluster.py); it is stopped by its PID and started again by the
harness with the same command line, read back from /proc.
"""

from __future__ import annotations

import http.client
import socket
import threading
import time
import urllib.parse
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from e2e.cluster import LocalCluster, _kwokctl_pids
from e2e.proc import Managed, stop_pid, wait_until


def _component(local: LocalCluster, name: str) -> Managed | None:
    """The process the harness started as `name`; None when kwokctl started it."""
    found = [p for p in local.group.procs if p.name == name]
    return found[-1] if found else None


def _kwokctl_pid(local: LocalCluster, name: str) -> int:
    """The PID kwokctl recorded for `name` (etcd, kube-apiserver, ...: e2e/cluster.py)."""
    found = [pid for component, pid in _kwokctl_pids(local.workdir) if component == name]
    if not found:
        raise LookupError(f"no {name} among the harness's or kwokctl's processes")
    return found[-1]


def _argv(pid: int) -> list[str]:
    raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    return [a.decode() for a in raw.split(b"\0") if a]


class Stopped:
    """A component stopped by PID; `start()` runs it again with the same command line."""

    def __init__(self, local: LocalCluster, name: str) -> None:
        self.local, self.name = local, name
        proc = _component(local, name)
        if proc is None:
            # Started by kwokctl (its binary runtime): its command line holds absolute paths,
            # so the harness can run it again itself, and stops it by PID like its own.
            pid = _kwokctl_pid(local, name)
            self.argv = _argv(pid)
            stop_pid(pid, None)
        else:
            self.argv = _argv(proc.pid)
            stop_pid(proc.pid, proc.exe)
            if proc.popen is not None:
                proc.popen.wait(10)
            local.group.procs.remove(proc)
        self.started: Managed | None = None

    def start(self, ready: Callable[[], bool], timeout: float = 120.0) -> Managed:
        self.started = self.local.group.start(self.name, self.argv)
        wait_until(f"{self.name} to be ready again", ready, timeout, [self.started])
        return self.started


def stop_component(local: LocalCluster, name: str) -> Stopped:
    """Stop `name` (kube-apiserver, lws-controller, ...) by PID; start it again with `.start`."""
    return Stopped(local, name)


def apiserver_ready(local: LocalCluster) -> Callable[[], bool]:
    def ready() -> bool:
        return local.kubectl("get", "--raw", "/readyz").returncode == 0

    return ready


class PrometheusProxy:
    """Forwards HTTP GETs and POSTs to Prometheus. `mode`: "up" forwards; "slow" waits `delay`
    seconds first (the client gives up long before); "down" closes the listening socket, so
    connections are refused, until `mode` is set back."""

    def __init__(self, upstream: str, delay: float = 30.0) -> None:
        self.upstream = urllib.parse.urlsplit(upstream)
        self.delay = delay
        self._mode = "up"
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = int(s.getsockname()[1])
        self.requests = 0
        self._stopping = threading.Event()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def mode(self) -> str:
        return self._mode

    @mode.setter
    def mode(self, value: str) -> None:
        if value not in ("up", "slow", "down"):
            raise ValueError(f"mode must be up, slow or down, not {value!r}")
        if value == "down" and self._server is not None:
            self._close()
        self._mode = value
        if value != "down" and self._server is None:
            self._open()

    def start(self) -> PrometheusProxy:
        self._open()
        return self

    def stop(self) -> None:
        self._stopping.set()
        self._close()

    def _open(self) -> None:
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def _forward(self, method: str) -> None:
                proxy.requests += 1
                if proxy._mode == "slow":
                    deadline = time.monotonic() + proxy.delay
                    while time.monotonic() < deadline and not proxy._stopping.is_set():
                        time.sleep(0.2)
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else None
                up = http.client.HTTPConnection(
                    proxy.upstream.hostname or "127.0.0.1", proxy.upstream.port or 80, timeout=30
                )
                try:
                    headers = {
                        k: v for k, v in self.headers.items() if k.lower() in ("content-type",)
                    }
                    up.request(method, self.path, body=body, headers=headers)
                    resp = up.getresponse()
                    data = resp.read()
                    self.send_response(resp.status)
                    self.send_header(
                        "Content-Type", resp.getheader("Content-Type") or "application/json"
                    )
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except OSError:
                    pass  # the client gave up (a slow answer) or Prometheus went away
                finally:
                    up.close()

            def do_GET(self) -> None:
                self._forward("GET")

            def do_POST(self) -> None:
                self._forward("POST")

        ThreadingHTTPServer.allow_reuse_address = True
        server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        server.daemon_threads = True
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, daemon=True)
        self._thread.start()

    def _close(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(5)
            self._thread = None
