"""What the hot path queues for one metered call, and how the flusher turns it into a row.

The caller's thread builds only a flat tuple, an *entry*, that points at a StaticFields made
once per wrapped session (or per span). Everything slower — merging per-call tags, JSON, the
pid, the wall-clock start — happens on the flusher thread in rows_from_entries.

The call reads only the monotonic clock; its start becomes Unix time on the flusher, as
start_ns + (wall - monotonic) read once per round. A record is written within a round of its
call, so the mapping is exact to the clocks' drift over that time, and a wall-clock step moves
the records of the round with it rather than tearing them apart.

Entry layout (index: field):
    0 static          StaticFields
    1 call_tags       dict[str, str] | None   per-call tags, validated by the flusher
    2 start_ns (monotonic clock)      3 duration_ns   4 cpu_time_ns
    5 batch_size      6 input_bytes   7 output_bytes (an int, or a function of no arguments
                                                      that gives it, never raising: called by
                                                      the flusher, off the hot path)
    8 input_tokens    9 output_tokens
    10 status (int)   11 error_type
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

from agent.buffer import encode_memory, encode_tags
from agent.record import MAX_TAG_KEY_CHARS, MAX_TAGS, InvalidRecord, Kind, Memory, Status, check_text

STATUS_OK = int(Status.OK)
STATUS_ERROR = int(Status.ERROR)

Entry = tuple


@dataclass(frozen=True, slots=True, eq=False)
class StaticFields:
    """The part of a record that is the same for every call of one session or span. Compared
    and hashed by identity: made once per session, it keys per-session caches (agent.enforcer)."""

    kind: int
    model: str
    model_version: str
    runtime: str
    execution_provider: str
    tags: Mapping[str, str]
    tags_json: str
    # What loading the model added to the process's resident memory (0: not measured), and
    # its memory column as the buffer keeps it (the daemon adds the peaks it samples).
    model_resident_bytes: int = 0
    memory_json: str | None = None


def check_tags(tags: object, where: str) -> dict[str, str]:
    """A validated copy of tags. Raises TypeError for a non-mapping or non-str keys/values and
    ValueError (InvalidRecord) for text the protocol refuses: these are setup mistakes, so they
    are reported where the tags are given, not discovered later on the collector."""
    if tags is None:
        return {}
    if not isinstance(tags, Mapping):
        raise TypeError(f"{where}: tags must be a mapping of str to str, got {type(tags).__name__}")
    checked = {}
    for key, value in tags.items():
        if type(key) is not str or type(value) is not str:
            raise TypeError(
                f"{where}: tag {key!r}: keys and values must be str, got "
                f"{type(key).__name__} -> {type(value).__name__}"
            )
        check_text("tags", key, MAX_TAG_KEY_CHARS, required=True)
        check_text(f"tags.{key}", value)
        checked[key] = value
    return checked


def merge_tags(*layers: Mapping[str, str]) -> dict[str, str]:
    """Later layers win (meter < session < call). Raises InvalidRecord past MAX_TAGS."""
    merged: dict[str, str] = {}
    for layer in layers:
        merged.update(layer)
    if len(merged) > MAX_TAGS:
        raise InvalidRecord("tags", f"has {len(merged)} entries; the limit is {MAX_TAGS}")
    return merged


def static_fields(
    kind: Kind,
    model: str,
    *,
    model_version: str,
    runtime: str,
    execution_provider: str,
    tags: Mapping[str, str],
    model_resident_bytes: int = 0,
) -> StaticFields:
    """Validate the static part once and encode its tags, so no call has to."""
    check_text("model", model, required=True)
    check_text("model_version", model_version)
    check_text("execution_provider", execution_provider)
    return StaticFields(
        kind=int(kind), model=model, model_version=model_version, runtime=runtime,
        execution_provider=execution_provider, tags=tags, tags_json=encode_tags(dict(tags)),
        model_resident_bytes=model_resident_bytes,
        memory_json=encode_memory(Memory(model_resident_bytes=model_resident_bytes)) if model_resident_bytes else None,
    )


def _tags_json(static: StaticFields, call_tags: object) -> str:
    merged = merge_tags(static.tags, check_tags(call_tags, "per-call tags"))
    return encode_tags(merged)


def rows_from_entries(
    entries: Iterable[Entry], pid: int, boot: int, unix_offset_ns: int,
    on_bad_tags: Callable[[Exception], None],
) -> list[tuple]:
    """Buffer rows (agent.buffer.APPEND_COLUMNS order) for entries, waiting for energy
    attribution; unix_offset_ns is wall minus monotonic time. A record whose per-call tags are
    invalid keeps its static tags: its cost still counts, on_bad_tags reports it."""
    rows = []
    for entry in entries:
        (static, call_tags, start_ns, duration_ns, cpu_time_ns, batch_size, input_bytes,
         output_bytes, input_tokens, output_tokens, status, error_type) = entry
        if type(output_bytes) is not int:
            output_bytes = output_bytes()
        tags_json = static.tags_json
        if call_tags is not None:
            try:
                tags_json = _tags_json(static, call_tags)
            except (TypeError, ValueError) as err:
                on_bad_tags(err)
        rows.append((
            static.kind, static.model, static.model_version, static.runtime,
            static.execution_provider, batch_size, input_bytes, output_bytes, input_tokens,
            output_tokens, start_ns + unix_offset_ns, duration_ns, cpu_time_ns, status, error_type,
            tags_json, pid, 1, 0, None, static.memory_json, start_ns, boot, 0,
        ))
    return rows
