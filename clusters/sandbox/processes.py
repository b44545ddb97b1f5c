"""Start control-plane processes detached from the caller, and stop them again by pid.

Each process gets its own session (so a Ctrl-C in the shell that ran `sandbox up` does not reach it),
a log file and a pid file. A pid is only trusted while the process behind it still runs the binary we
started and has the start time we recorded, so a recycled pid is never signalled.

The start time is the kernel's: clock ticks since boot (/proc/<pid>/stat), which no change of the
wall clock can move. psutil's create_time() adds the wall-clock boot time, which moves in whole
seconds when the clock is stepped, so a live process would no longer match its record.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import psutil

# Exit statuses of our own children, reaped while checking on them; kept to say why one stopped.
_exit_statuses: dict[int, int] = {}


def start_ticks(pid: int) -> int | None:
    """When the process with this pid started, in clock ticks since boot (None when there is none)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            # The command name (field 2) may hold spaces and parentheses; the fields after it do not.
            fields = stat.read().rsplit(b")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return int(fields[19])  # field 22, starttime


def _exec_done(pid: int) -> bool:
    """Has the child finished exec()? Until then its command line reads empty (or it already exited)."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as cmdline:
            return bool(cmdline.read(1))
    except OSError:
        return True  # gone: process_for will say so


def spawn(argv: list[str], log_path: Path, pid_path: Path, env: dict | None = None) -> tuple[int, int]:
    """Start `argv` detached; returns (pid, start ticks) for `process_for`, once the program runs."""
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
    ticks = start_ticks(process.pid) or 0  # 0 (already gone) matches no process
    # Popen returns when exec() closes the close-on-exec pipe, before the kernel has finished loading
    # the new program: for a while (long under CPU load, with 100 MB Go binaries) the command line is
    # empty, and a check of "is this still our etcd?" would wrongly answer no.
    wait_until(lambda: _exec_done(process.pid), 30, interval=0.005)
    return process.pid, ticks


def process_for(
    pid: int | None, executable: str, ticks: int | None = None, started: float | None = None
) -> psutil.Process | None:
    """The live process with this pid if it still runs `executable` and began at `ticks`, else None.

    `started` (wall-clock seconds, as sandboxes recorded before `ticks`) is only used without `ticks`.
    """
    if not pid:
        return None
    try:
        process = psutil.Process(pid)
        if process.status() == psutil.STATUS_ZOMBIE:
            _reap(pid)
            return None
        if ticks is not None and start_ticks(pid) != ticks:
            return None  # the pid was recycled by another process
        if ticks is None and started is not None and abs(process.create_time() - started) > 2:
            return None
        cmdline = process.cmdline() or [process.exe()]  # empty only while exec() is still loading
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return None
    if not cmdline or cmdline[0] != executable:
        return None
    return process


def exit_reason(pid: int | None) -> str:
    """How our child with this pid ended ("exit code 1", "killed by SIGKILL"), if we can know."""
    if pid and pid not in _exit_statuses:
        _reap(pid)
    status = _exit_statuses.get(pid)
    if status is None:
        return "exit status unknown"
    if os.WIFSIGNALED(status):
        return f"killed by {signal.Signals(os.WTERMSIG(status)).name}"
    return f"exit code {os.WEXITSTATUS(status)}"


def _reap(pid: int) -> None:
    # Children of a long-lived caller (pytest, the bench) linger as zombies until waited for.
    try:
        reaped, status = os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        return
    if reaped:
        _exit_statuses[pid] = status


def _gone(process: psutil.Process) -> bool:
    # A dead child of another long-lived process stays a zombie until that parent reaps it.
    try:
        return process.status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def stop(
    pid: int | None, executable: str, ticks: int | None = None, timeout: float = 15, started: float | None = None
) -> bool:
    """SIGTERM, then SIGKILL after `timeout`. Returns True if a process was stopped."""
    process = process_for(pid, executable, ticks, started)
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
