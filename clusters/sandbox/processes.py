"""Start control-plane processes detached from the caller, and stop them again by pid.

Each process gets its own session (so a Ctrl-C in the shell that ran `sandbox up` does not reach it),
a log file and a pid file. A pid is only trusted while the process behind it still runs the binary we
started and has the start time we recorded, so a recycled pid is never signalled.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import psutil


def spawn(argv: list[str], log_path: Path, pid_path: Path, env: dict | None = None) -> tuple[int, float]:
    """Start `argv` detached; returns (pid, start time) for `process_for`."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    pid_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log:
        process = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env={**os.environ, **(env or {})},
            close_fds=True,
        )
    pid_path.write_text(f"{process.pid}\n")
    try:
        started = psutil.Process(process.pid).create_time()
    except psutil.NoSuchProcess:
        started = 0.0  # already gone; process_for will say so
    return process.pid, started


def process_for(pid: int | None, executable: str, started: float | None = None) -> psutil.Process | None:
    """The live process with this pid if it still runs `executable` (and began at `started`), else None."""
    if not pid:
        return None
    try:
        process = psutil.Process(pid)
        if process.status() == psutil.STATUS_ZOMBIE:
            _reap(pid)
            return None
        cmdline = process.cmdline()
        if started is not None and abs(process.create_time() - started) > 0.05:
            return None  # the pid was recycled by another process
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return None
    if not cmdline or cmdline[0] != executable:
        return None
    return process


def _reap(pid: int) -> None:
    # Children of a long-lived caller (pytest, the bench) linger as zombies until waited for.
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass


def _gone(process: psutil.Process) -> bool:
    # A dead child of another long-lived process stays a zombie until that parent reaps it.
    try:
        return process.status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def stop(pid: int | None, executable: str, started: float | None = None, timeout: float = 15) -> bool:
    """SIGTERM, then SIGKILL after `timeout`. Returns True if a process was stopped."""
    process = process_for(pid, executable, started)
    if process is None:
        return False
    for sig, grace in ((signal.SIGTERM, timeout), (signal.SIGKILL, 10)):
        try:
            process.send_signal(sig)
        except psutil.NoSuchProcess:
            break
        if wait_until(lambda: _gone(process), grace, interval=0.1):
            break
    else:
        raise OSError(f"process {pid} ({executable}) survived SIGKILL")
    _reap(pid)
    return True


def wait_until(check, timeout: float, interval: float = 0.2, on_wait=None):
    """Poll `check()` until it returns a truthy value; returns it, or None on timeout."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() >= deadline:
            return None
        if on_wait:
            on_wait()
        time.sleep(interval)


def rss_bytes(processes: list[psutil.Process]) -> int:
    total = 0
    for process in processes:
        try:
            total += process.memory_info().rss
        except psutil.NoSuchProcess:
            pass
    return total
