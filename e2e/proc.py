"""Start, track and stop the local test servers by PID.

The control plane and Prometheus run as plain processes. Every PID is written to a state file in the
work directory the moment the process starts, so the fixture, `python -m e2e.cluster down` or a
later session can stop exactly those processes (and nothing else) even after a crash. A PID is only
signalled while /proc still shows the same executable, so a reused PID is never hit.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

STATE_FILE = "pids.json"


class StartError(RuntimeError):
    """A component did not start; the message holds the reason and the tail of its log."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free right now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def log_tail(path: Path, lines: int = 40) -> str:
    """The last `lines` lines of a log file, or a note that it is missing."""
    try:
        data = path.read_bytes()[-64_000:].decode("utf-8", "replace")
    except OSError:
        return f"(no log at {path})"
    return "\n".join(data.splitlines()[-lines:])


def _exe_of(pid: int) -> str | None:
    try:
        return os.readlink(f"/proc/{pid}/exe")
    except OSError:
        return None


def pid_alive(pid: int, exe: str | None = None) -> bool:
    """Whether `pid` runs (and, when given, still runs the executable `exe`)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    if stat.rsplit(")", 1)[-1].split()[0] == "Z":  # a zombie has exited
        return False
    if exe is None:
        return True
    current = _exe_of(pid)
    return current is None or os.path.realpath(exe) == current.removesuffix(" (deleted)")


def stop_pid(pid: int, exe: str | None, timeout: float = 10.0) -> bool:
    """SIGTERM, then SIGKILL after `timeout`, one PID. Returns True if it was running."""
    if not pid_alive(pid, exe):
        return False
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not pid_alive(pid, exe):
            return True
        time.sleep(0.1)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and pid_alive(pid, exe):
        time.sleep(0.1)
    return True


@dataclass
class Managed:
    """One process this harness started."""

    name: str
    pid: int
    exe: str
    log: Path
    popen: subprocess.Popen[bytes] | None = None

    def alive(self) -> bool:
        if self.popen is not None:
            return self.popen.poll() is None
        return pid_alive(self.pid, self.exe)

    def tail(self, lines: int = 40) -> str:
        return log_tail(self.log, lines)


class ProcessGroup:
    """The processes of one work directory, recorded in `<workdir>/pids.json`."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.logdir = workdir / "logs"
        self.procs: list[Managed] = []

    @property
    def state_file(self) -> Path:
        return self.workdir / STATE_FILE

    def _save(self) -> None:
        state = [
            {"name": p.name, "pid": p.pid, "exe": p.exe, "log": str(p.log)} for p in self.procs
        ]
        tmp = self.state_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(state, indent=1))
        tmp.replace(self.state_file)

    def start(
        self, name: str, argv: Sequence[str], env: Mapping[str, str] | None = None
    ) -> Managed:
        """Start `argv` (no shell) with its output in logs/<name>.log, and record its PID."""
        self.logdir.mkdir(parents=True, exist_ok=True)
        log = self.logdir / f"{name}.log"
        full_env = dict(os.environ)
        if env:
            full_env.update(env)
        with log.open("ab") as out:
            popen = subprocess.Popen(
                list(argv),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=full_env,
                cwd=self.workdir,
                start_new_session=True,  # survives the terminal of `make cluster-up`
            )
        proc = Managed(name, popen.pid, os.path.realpath(argv[0]), log, popen)
        self.procs.append(proc)
        self._save()
        return proc

    def stop_all(self) -> list[str]:
        """Stop every recorded process, newest first. Returns the names that were running."""
        stopped = []
        for proc in reversed(self.procs):
            if stop_pid(proc.pid, proc.exe):
                stopped.append(proc.name)
            if proc.popen is not None:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.popen.wait(timeout=1)
        self.procs.clear()
        self.state_file.unlink(missing_ok=True)
        return stopped

    @classmethod
    def load(cls, workdir: Path) -> ProcessGroup:
        """The group recorded in `workdir` by another process (for `down` and `status`)."""
        group = cls(workdir)
        try:
            state = json.loads(group.state_file.read_text())
        except (OSError, ValueError):
            return group
        for entry in state:
            group.procs.append(
                Managed(entry["name"], int(entry["pid"]), entry["exe"], Path(entry["log"]))
            )
        return group


def wait_until(
    what: str,
    check: Callable[[], bool],
    timeout: float,
    watch: Sequence[Managed] = (),
    interval: float = 0.25,
) -> None:
    """Poll `check` until it is true; fail early, with the log tail, if a watched process exits."""
    deadline = time.monotonic() + timeout
    last_error: BaseException | None = None
    while True:
        for proc in watch:
            if not proc.alive():
                raise StartError(
                    f"{proc.name} exited while waiting for {what}; last lines of {proc.log}:\n"
                    f"{proc.tail()}"
                )
        try:
            if check():
                return
            last_error = None
        except Exception as exc:  # the check talks to a server that may not be up yet
            last_error = exc
        if time.monotonic() > deadline:
            detail = f" (last error: {last_error})" if last_error else ""
            tails = "".join(f"\nlast lines of {p.log}:\n{p.tail()}" for p in watch)
            raise StartError(f"timed out after {timeout:.0f}s waiting for {what}{detail}{tails}")
        time.sleep(interval)
