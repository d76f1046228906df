"""Shared pieces of the collector's server tests: the servers on loopback in a background
thread (plaintext or TLS), records and batches to push, bearer tokens as HTTP headers and gRPC
metadata, a small JSON Schema check for the OpenAPI document, and the cost roll-ups as stored
and as made afresh. (The `store`, `servers` and token fixtures over them are in conftest.py.)"""

from __future__ import annotations

import asyncio
import json
import re
import threading
from concurrent.futures import Future

import sqlalchemy as sa
from infermeter.v1 import ingest_pb2, usage_pb2

from agent.codec import record_to_proto
from agent.record import EnergyShare, Kind, UsageRecord
from collector.rollups import DAILY_COLUMNS, ROLLUP_COLUMNS, daily_rows, rebuild_rollups
from collector.schema import cost_rollups, cost_rollups_daily
from collector.server import Servers, start_servers
from collector.tls import ServerTls

STREAM_ID = "0123456789abcdef0123456789abcdef"
START_UNIX_NS = 1_795_000_000 * 10**9  # 2026-11-18T11:06:40Z


class ServersThread:
    """collector.server's servers on their own event loop, as in the real process; tests talk
    to them over real channels and sockets from the main thread."""

    def __init__(self, store, *, grace_s: float = 5.0, tls: ServerTls | None = None) -> None:
        self._store = store
        self._grace_s = grace_s
        self._tls = tls
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self.servers: Servers | None = None

    def run(self, coroutine):
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(30)

    def submit(self, coroutine) -> Future:
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop)

    def __enter__(self) -> ServersThread:
        self._thread.start()
        self.servers = self.run(
            start_servers(
                self._store, grpc_address="127.0.0.1:0", http_address="127.0.0.1:0", grace_s=self._grace_s, tls=self._tls
            )
        )
        return self

    def begin_stop(self) -> Future:
        """Start the graceful stop; the future completes when the servers have stopped."""
        servers, self.servers = self.servers, None
        return self.submit(servers.stop())

    def stop(self) -> None:
        if self.servers is not None:
            self.begin_stop().result(30)

    def __exit__(self, *exc_info) -> None:
        self.stop()
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()

    @property
    def grpc_address(self) -> str:
        return self.servers.grpc_address

    @property
    def http_url(self) -> str:
        """http://HOST:PORT, or https:// when the servers speak TLS."""
        return self.servers.http_url


class Clock:
    """A collector's clock that stands where a test sets it (Store.open(..., clock=Clock(t)))."""

    def __init__(self, now: int) -> None:
        self.now = now

    def __call__(self) -> int:
        return self.now


def bearer(token: str) -> dict[str, str]:
    """The HTTP header that carries a token."""
    return {"Authorization": f"Bearer {token}"}


def bearer_metadata(token: str) -> list[tuple[str, str]]:
    """The gRPC metadata that carries a token."""
    return [("authorization", f"Bearer {token}")]


def make_record(seq: int, **fields) -> UsageRecord:
    values = dict(
        seq=seq, kind=Kind.INFERENCE, model="resnet50", model_version="3", runtime="onnxruntime",
        start_unix_ns=START_UNIX_NS + seq * 10**6, duration_ns=2_000_000, cpu_time_ns=1_500_000,
        batch_size=1, tags={"project": "search"},
        energy=(EnergyShare("cpu", 5_000, "rapl", "cpu-time", 100_000_000, 50),),
    )
    values.update(fields)
    return UsageRecord(**values)


def push_request(records, *, stream_id: str = STREAM_ID, **fields) -> ingest_pb2.PushRequest:
    messages = [record if isinstance(record, usage_pb2.UsageRecord) else record_to_proto(record) for record in records]
    request = ingest_pb2.PushRequest(
        stream_id=stream_id,
        first_seq=messages[0].seq if messages else 0,
        last_seq=messages[-1].seq if messages else 0,
        records=messages,
        device=ingest_pb2.DeviceInfo(hostname="edge-1", cpu_cores=4, platform="linux-x86_64", agent_version="0.1.0"),
    )
    for name, value in fields.items():
        if name == "device":
            request.device.CopyFrom(value)
        else:
            setattr(request, name, value)
    return request


def resolve(document: dict, item: dict) -> dict:
    """An OpenAPI object, or the one its local `$ref` points to."""
    while "$ref" in item:
        target = document
        for part in item["$ref"].removeprefix("#/").split("/"):
            target = target[part]
        item = target
    return item


# A JSON Schema subset, enough for the OpenAPI document's schemas: $ref to components, type
# (one or a list), properties, required, additionalProperties (false or a schema), items, enum,
# pattern, minimum, maximum, minLength, maxLength, maxItems, uniqueItems, maxProperties,
# propertyNames. An unsupported keyword fails loudly, so the check never silently passes.
_KEYWORDS = {"$ref", "type", "properties", "required", "additionalProperties", "items", "enum", "pattern",
             "minimum", "maximum", "description", "format", "example", "examples", "title", "minLength",
             "maxLength", "maxItems", "uniqueItems", "maxProperties", "propertyNames"}
_TYPES = {
    "object": lambda v: isinstance(v, dict),
    "array": lambda v: isinstance(v, list),
    "string": lambda v: isinstance(v, str),
    "integer": lambda v: type(v) is int,
    "number": lambda v: type(v) in (int, float),
    "boolean": lambda v: type(v) is bool,
    "null": lambda v: v is None,
}


def schema_errors(value, schema: dict, document: dict, path: str = "$") -> list[str]:
    unknown = set(schema) - _KEYWORDS
    if unknown:
        raise AssertionError(f"{path}: schema keywords this check does not know: {sorted(unknown)}")
    if "$ref" in schema:
        return schema_errors(value, resolve(document, schema), document, path)
    if "type" in schema:
        types = schema["type"] if isinstance(schema["type"], list) else [schema["type"]]
        if not any(_TYPES[name](value) for name in types):
            return [f"{path}: {value!r} is not of type {schema['type']}"]
    errors = []
    if "enum" in schema and value not in schema["enum"]:
        errors.append(f"{path}: {value!r} is not one of {schema['enum']}")
    if "pattern" in schema and isinstance(value, str) and not re.search(schema["pattern"], value):
        errors.append(f"{path}: {value!r} does not match {schema['pattern']}")
    if "minimum" in schema and type(value) in (int, float) and value < schema["minimum"]:
        errors.append(f"{path}: {value!r} is below {schema['minimum']}")
    if "maximum" in schema and type(value) in (int, float) and value > schema["maximum"]:
        errors.append(f"{path}: {value!r} is above {schema['maximum']}")
    if isinstance(value, str) and not schema.get("minLength", 0) <= len(value) <= schema.get("maxLength", len(value)):
        errors.append(f"{path}: {value!r} has a length outside [{schema.get('minLength', 0)}, {schema.get('maxLength')}]")
    if isinstance(value, list) and len(value) > schema.get("maxItems", len(value)):
        errors.append(f"{path}: more than {schema['maxItems']} items")
    if isinstance(value, list) and schema.get("uniqueItems") and len({json.dumps(item) for item in value}) < len(value):
        errors.append(f"{path}: items are not unique")
    if isinstance(value, dict) and len(value) > schema.get("maxProperties", len(value)):
        errors.append(f"{path}: more than {schema['maxProperties']} properties")
    if isinstance(value, dict) and "propertyNames" in schema:
        for name in value:
            errors += schema_errors(name, schema["propertyNames"], document, f"{path}.{name} (name)")
    if isinstance(value, dict):
        properties = schema.get("properties", {})
        errors += [f"{path}: missing {name!r}" for name in schema.get("required", ()) if name not in value]
        if schema.get("additionalProperties") is False:
            errors += [f"{path}: unexpected {name!r}" for name in value if name not in properties]
        extra = schema.get("additionalProperties")
        for name, item in value.items():
            if name in properties:
                errors += schema_errors(item, properties[name], document, f"{path}.{name}")
            elif isinstance(extra, dict):
                errors += schema_errors(item, extra, document, f"{path}.{name}")
    if isinstance(value, list) and "items" in schema:
        for i, item in enumerate(value):
            errors += schema_errors(item, schema["items"], document, f"{path}[{i}]")
    return errors


def stored_rollups(store) -> list[tuple]:
    """The store's hourly roll-up rows (collector.rollups.ROLLUP_COLUMNS), in key order, once
    its daily roll-ups are checked to be exactly the sums of those hours."""
    with store.engine.connect() as connection:
        hourly = _rollup_rows(connection)
        assert _daily_rows(connection) == daily_rows(hourly)
    return hourly


def recomputed_rollups(store) -> list[tuple]:
    """The roll-ups made afresh from the stored records (and the change rolled back)."""
    with store.engine.connect() as connection, connection.begin() as outer:
        rebuild_rollups(connection, page_groups=7)
        rows = _rollup_rows(connection)
        outer.rollback()
    return rows


def _rollup_rows(connection: sa.Connection) -> list[tuple]:
    query = sa.select(*(cost_rollups.c[name] for name in ROLLUP_COLUMNS)).order_by(*cost_rollups.primary_key.columns)
    return [tuple(row) for row in connection.execute(query)]


def _daily_rows(connection: sa.Connection) -> list[tuple]:
    table = cost_rollups_daily
    query = sa.select(*(table.c[name] for name in DAILY_COLUMNS)).order_by(*table.primary_key.columns)
    return [tuple(row) for row in connection.execute(query)]


def run_cli(capsys, *argv: str) -> tuple[int, str, str]:
    """`infermeter ARGV...` in this process: the exit code, stdout and stderr."""
    from agent.cli import main

    try:
        code = main(list(argv))
    except SystemExit as exit_:  # argparse's usage errors
        code = exit_.code
    out, err = capsys.readouterr()
    return code, out, err
