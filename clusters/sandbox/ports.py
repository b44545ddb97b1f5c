"""Loopback ports for sandbox components: chosen where other programs are least likely to take them
meanwhile, and recognised in a component's log when one was taken all the same."""

from __future__ import annotations

import random
import re
import socket
from pathlib import Path

PORT_SPAN = 12000  # ports to choose from, below the ephemeral range


def port_range() -> range:
    """Where sandboxes look for free ports: just below the kernel's ephemeral range.

    Every outgoing connection and every bind to port 0 on the machine draws its port from the
    ephemeral range; a port found free there can be taken by any of them before the component binds
    it (the API server binds its port only once etcd is healthy, seconds later).
    """
    try:
        low, high = map(int, Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split())
    except (OSError, ValueError):
        low, high = 32768, 60999
    if low >= 1024 + PORT_SPAN:
        return range(low - PORT_SPAN, low)
    if high + PORT_SPAN <= 65535:
        return range(high + 1, high + 1 + PORT_SPAN)
    return range(0)


def free_ports(count: int, avoid: int | None = None) -> list[int]:
    """`count` distinct ports free on 127.0.0.1 now, none of them `avoid`."""
    ports: list[int] = []
    candidates = port_range()
    for _ in range(100 * count if candidates else 0):
        port = random.choice(candidates)
        if port not in ports and port != avoid and not port_in_use(port):
            ports.append(port)
            if len(ports) == count:
                return ports
    ports = []
    # No room outside the ephemeral range: let the kernel choose (and rely on the retry on a clash).
    sockets = []
    try:
        for _ in range(count):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            sockets.append(s)
            ports.append(s.getsockname()[1])
    finally:
        for s in sockets:
            s.close()
    return ports


def reserve_port() -> socket.socket:
    """A socket holding a port chosen as `free_ports` does, for a listener that comes later.

    It is bound, not listening, with SO_REUSEPORT alone: every other bind to the port fails (Go's
    listeners, `port_in_use`, other sandboxes' choices), except a listener of this user's that sets
    SO_REUSEPORT as well (`socket.create_server(..., reuse_port=True)`), which it lets through and
    which alone receives the connections. Closing it gives the port back."""
    candidates = port_range()
    for port in [random.choice(candidates) for _ in range(100)] if candidates else []:
        try:
            return _bound_reusing_port(port)
        except OSError:
            continue
    return _bound_reusing_port(0)  # no room outside the ephemeral range: the kernel chooses


def _bound_reusing_port(port: int) -> socket.socket:
    held = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    held.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    try:
        held.bind(("127.0.0.1", port))
    except OSError:
        held.close()
        raise
    return held


def port_in_use(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        # As Go's listeners do: connections in TIME_WAIT from a stopped server do not hold the port.
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return True
    return False


def port_taken(log: Path) -> int | None:
    """The port a Go component could not bind, from its log ("bind: address already in use")."""
    try:
        text = log.read_text(errors="replace")
    except OSError:
        return None
    match = re.search(r"listen tcp [\d.]+:(\d+): bind: address already in use", text)
    return int(match.group(1)) if match else None
