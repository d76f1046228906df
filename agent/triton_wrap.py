"""Meter.wrap_triton: a Triton client in, the same client metered out (agent.triton_client).

Which client it is comes from its class's module, so tritonclient is never imported here:
tritonclient.grpc, tritonclient.http (blocking) and tritonclient.grpc.aio, tritonclient.http.aio
(asyncio). The metered methods are instance attributes of the wrapper; everything else is the
client's, and `with` / `async with` give back the wrapper, not the bare client.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import TracebackType
from typing import Any

from agent.clock import Clock
from agent.enforcer import BudgetGuard
from agent.entry import check_tags, merge_tags
from agent.flusher import Flusher
from agent.triton_client import (
    GrpcStreams,
    TritonMeter,
    metered_aio_infer,
    metered_async_infer,
    metered_http_async_infer,
    metered_infer,
    metered_stream_infer,
)

_MODULES = {
    "tritonclient.grpc": ("grpc", False),
    "tritonclient.http": ("http", False),
    "tritonclient.grpc.aio": ("grpc", True),
    "tritonclient.http.aio": ("http", True),
}


def client_kind(client: Any) -> tuple[str, bool]:
    """(protocol, is_asyncio) of a tritonclient client; TypeError for anything else."""
    module = type(client).__module__
    for prefix in (module, module.rsplit(".", 1)[0]):  # tritonclient.grpc._client -> tritonclient.grpc
        if prefix in _MODULES and type(client).__name__ == "InferenceServerClient":
            return _MODULES[prefix]
    raise TypeError(
        "wrap_triton takes a tritonclient.grpc, tritonclient.http, tritonclient.grpc.aio or "
        f"tritonclient.http.aio InferenceServerClient, got {type(client).__module__}.{type(client).__name__}"
    )


class MeteredTritonClient:
    """A wrapped blocking client (grpc or http). infer (both), async_infer (both; grpc's calls
    back, http's returns a request whose get_result() ends the record), start_stream and
    async_stream_infer (grpc) take the client's arguments plus a keyword-only tags=."""

    def __init__(self, client: Any, meter: TritonMeter) -> None:
        self._client = client
        self._meter = meter
        self.infer = metered_infer(meter, client.infer)
        if meter.protocol == "grpc":
            self.async_infer = metered_async_infer(meter, client.async_infer)
            streams = GrpcStreams(meter, client)
            self.start_stream = streams.start_stream
            self.async_stream_infer = streams.async_stream_infer
        else:
            self.async_infer = metered_http_async_infer(meter, client.async_infer)

    @property
    def __class__(self) -> type:  # type: ignore[override]
        return type(self._client)

    @property
    def client(self) -> Any:
        """The wrapped client, unmetered."""
        return self._client

    def __enter__(self) -> MeteredTritonClient:
        self._client.__enter__()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> Any:
        return self._client.__exit__(exc_type, exc, tb)

    def __getattr__(self, name: str) -> Any:
        return getattr(object.__getattribute__(self, "_client"), name)

    def __dir__(self) -> list[str]:
        return sorted(set(object.__dir__(self)) | set(dir(self._client)))

    def __repr__(self) -> str:
        return f"<MeteredTritonClient of {self._client!r}>"


class AsyncMeteredTritonClient:
    """A wrapped asyncio client: infer (both) and stream_infer (grpc.aio; each request dict may
    carry "tags") are metered."""

    def __init__(self, client: Any, meter: TritonMeter) -> None:
        self._client = client
        self._meter = meter
        self.infer = metered_aio_infer(meter, client.infer)
        if meter.protocol == "grpc":
            self.stream_infer = metered_stream_infer(meter, client.stream_infer)

    @property
    def __class__(self) -> type:  # type: ignore[override]
        return type(self._client)

    @property
    def client(self) -> Any:
        return self._client

    async def __aenter__(self) -> AsyncMeteredTritonClient:
        await self._client.__aenter__()
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> Any:
        return await self._client.__aexit__(exc_type, exc, tb)

    def __getattr__(self, name: str) -> Any:
        return getattr(object.__getattribute__(self, "_client"), name)

    def __dir__(self) -> list[str]:
        return sorted(set(object.__dir__(self)) | set(dir(self._client)))

    def __repr__(self) -> str:
        return f"<AsyncMeteredTritonClient of {self._client!r}>"


def wrap_client(
    client: Any, *, flusher: Flusher, clock: Clock, guard: BudgetGuard, meter_tags: Mapping[str, str],
    tags: Mapping[str, str] | None,
) -> MeteredTritonClient | AsyncMeteredTritonClient:
    """The client, metered; TypeError/ValueError for a client or tags it cannot take."""
    if type(client) in (MeteredTritonClient, AsyncMeteredTritonClient):
        raise ValueError("this client is metered already; wrap the original client")
    protocol, is_asyncio = client_kind(client)
    meter = TritonMeter(flusher, clock, guard, merge_tags(meter_tags, check_tags(tags, "wrap_triton")), protocol)
    return AsyncMeteredTritonClient(client, meter) if is_asyncio else MeteredTritonClient(client, meter)
