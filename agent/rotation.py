"""Taking a rotated device token: while an operator rotates the device's token
(`infermeter admin device rotate`), the collector's replies carry the new one; it goes to the
token file, which every push reads, so the next push uses it and the collector can retire the
old token.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from agent.config import AgentConfig
from agent.files import write_atomically

logger = logging.getLogger(__name__)

# What a token handed over by the collector may look like before it is written anywhere.
_MAX_TOKEN_CHARS = 512


class TokenKeeper:
    """Keeps the new device token a collector hands over during a rotation: written atomically
    (mode 0600) to the token file, which every push reads. Once per token; a failure is logged
    once and retried with the next reply that carries the token (the old one keeps working
    until the device pushes with the new one)."""

    def __init__(self, token_file: Path | None) -> None:
        """token_file None: the token is set inline, and a rotation cannot be taken."""
        self._token_file = token_file
        self._kept = ""
        self._reported = ""

    @classmethod
    def for_config(cls, config: AgentConfig) -> TokenKeeper:
        # An inline token wins over the file (AgentConfig.device_token), so it cannot be replaced.
        return cls(None if config.token else config.token_file)

    def __call__(self, token: str) -> None:
        if token == self._kept:
            return
        if not (0 < len(token) <= _MAX_TOKEN_CHARS and token.isascii() and token.isprintable() and " " not in token):
            self._report(token, "the collector handed over a malformed token; ignored, the current one stays")
            return
        if self._token_file is None:
            self._report(token, "the collector rotates this device's token, but the token is set inline "
                         "(collector.token or INFERMETER_TOKEN) and cannot be replaced: set collector.token_file "
                         "to take rotations; the current token keeps working meanwhile")
            return
        try:
            write_atomically(self._token_file, token + "\n", mode=0o600)
            _sync_directory(self._token_file.parent)
        except OSError as err:
            self._report(token, f"cannot write the rotated device token to {self._token_file}: {err.strerror or err} "
                         "(the agent needs write access to the file's folder); the current token keeps working, "
                         "retrying with the next push")
            return
        self._kept = token
        logger.info("the collector rotated this device's token: the new one is in %s and used from now on", self._token_file)

    def _report(self, token: str, message: str) -> None:
        if token != self._reported:
            self._reported = token
            logger.warning("%s", message)


def _sync_directory(path: Path) -> None:
    """The rename that replaced the token file survives a power cut: the collector retires the
    old token as soon as the device pushes with the new one."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
