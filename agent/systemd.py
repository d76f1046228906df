"""sd_notify(3) without libsystemd: one datagram to $NOTIFY_SOCKET. A no-op outside systemd.

    notify("READY=1"); notify("STATUS=shipping"); notify("WATCHDOG=1"); notify("STOPPING=1")

watchdog_timeout_s() reads the watchdog timeout systemd gives the service (WatchdogSec=), as
sd_watchdog_enabled(3) does; agent.watchdog decides when a ping may be sent.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Mapping

logger = logging.getLogger(__name__)


def notify(state: str, *, environ: Mapping[str, str] | None = None) -> bool:
    """Send state (e.g. "READY=1", "STOPPING=1", "STATUS=...") to systemd; True if sent."""
    address = (os.environ if environ is None else environ).get("NOTIFY_SOCKET", "")
    if not address:
        return False
    if address.startswith("@"):  # abstract namespace socket
        address = "\0" + address[1:]
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.connect(address)
            sock.sendall(state.encode())
    except OSError as err:
        logger.warning("cannot notify systemd at %s: %s", address, err)
        return False
    return True


def watchdog_timeout_s(*, environ: Mapping[str, str] | None = None, pid: int | None = None) -> float | None:
    """The watchdog timeout systemd set for this process (WATCHDOG_USEC, in seconds), or None:
    no watchdog, a malformed value, or one meant for another process (WATCHDOG_PID)."""
    environ = os.environ if environ is None else environ
    usec = environ.get("WATCHDOG_USEC", "")
    owner = environ.get("WATCHDOG_PID", "")
    if owner and owner != str(os.getpid() if pid is None else pid):
        return None
    if not usec.isdigit() or int(usec) == 0:
        if usec:
            logger.warning("ignoring WATCHDOG_USEC=%r: not a positive number of microseconds", usec)
        return None
    return int(usec) / 1e6
