"""The device's default tags: what an operator set for this device on the collector
(`infermeter admin device-tags set`), received in every Push reply and added by the daemon to
each record it ships that does not carry that tag itself.

The daemon applies them when it ships, not the library when it records:
- the daemon is what hears the reply; the apps' processes would each have to reload it;
- every record gets them, whoever wrote it: apps on any version of the library, spans, the
  daemon's own idle and roll-up records;
- nothing is added to the caller's thread, and the buffer keeps what the app recorded
  (`infermeter agent records` shows the record's own tags).
A record's own tags (meter, session, call, and agent.toml's [tags] through Meter.from_config)
win over the defaults; the defaults fill only the keys it lacks, while it stays within
MAX_TAGS. A record waiting in the buffer gets the defaults known when it is shipped.

The defaults are kept in the buffer's meta table, so a restarted daemon applies them before
the collector's first reply, and a change moves the budget state's version on: the device's
budgets (agent.budget_store counting, agent.enforcer enforcing) judge records by their tags
over the defaults, as the collector will.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from agent.record import MAX_TAGS, UsageRecord

if TYPE_CHECKING:  # the library reads the defaults (agent.enforcer): no gRPC for it
    from agent.buffer import Buffer
    from agent.exporter import Exporter, PendingExport

logger = logging.getLogger(__name__)

META_KEY = "device_tags"


def load_tags(buffer: Buffer) -> dict[str, str]:
    """The defaults kept in the buffer ({}: none)."""
    stored = buffer.meta(META_KEY)
    return json.loads(stored) if stored else {}


class DeviceTags:
    """The daemon's copy of the defaults (from its main loop only)."""

    def __init__(self, buffer: Buffer) -> None:
        self._buffer = buffer
        self.tags = load_tags(buffer)

    def keep(self, tags: Mapping[str, str] | None) -> None:
        """Make `tags` the defaults (None: the reply said nothing of them); written only when
        they changed."""
        if tags is None:
            return
        new = dict(sorted(tags.items()))
        if new == self.tags:
            return
        from agent.budget_store import bump_version  # it reads the defaults too

        with self._buffer.transaction() as conn:
            conn.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (META_KEY, json.dumps(new)))
            bump_version(conn)
        logger.info("default tags of this device from the collector: %s", new or "none")
        self.tags = new


def with_defaults(records: Sequence[UsageRecord], defaults: Mapping[str, str]) -> Sequence[UsageRecord]:
    """The records, each with the defaults it lacks added (copies; the originals are left as
    they are)."""
    if not defaults:
        return records
    tagged = []
    for record in records:
        missing = [key for key in defaults if key not in record.tags]
        room = MAX_TAGS - len(record.tags)
        if missing and room > 0:
            tags = {**record.tags, **{key: defaults[key] for key in missing[:room]}}
            record = dataclasses.replace(record, tags=tags)
        tagged.append(record)
    return tagged


class TaggingExporter:
    """An exporter that adds the device's default tags to the batches it prepares, before
    `exporter` encodes them."""

    def __init__(self, exporter: Exporter, tags: DeviceTags) -> None:
        self._exporter = exporter
        self._tags = tags

    def prepare(self, stream_id: str, records: Sequence[UsageRecord]) -> object:
        return self._exporter.prepare(stream_id, with_defaults(records, self._tags.tags))

    def send(self, prepared: object) -> PendingExport:
        return self._exporter.send(prepared)
