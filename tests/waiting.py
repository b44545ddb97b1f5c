"""Waiting for something a real service does in its own time: one helper for every test."""

import time


def wait_for(predicate, timeout, what, detail=lambda: "", interval=0.2):
    """``predicate()``'s first true value, polled every ``interval`` s for ``timeout`` s.

    Past the deadline: AssertionError naming ``what`` (and ``detail()``, e.g. a process's log).
    """
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            extra = detail()
            raise AssertionError(f"timed out after {timeout}s waiting for {what}" + (f"\n{extra}" if extra else ""))
        time.sleep(interval)
