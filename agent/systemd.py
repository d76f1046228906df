"""sd_notify(3) without libsystemd: one datagram to $NOTIFY_SOCKET. A no-op outside systemd."""

from __future__ import annotations

import logging
import os
import socket

logger = logging.getLogger(__name__)


def notify(state: str, *, environ: dict[str, str] | None = None) -> bool:
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
