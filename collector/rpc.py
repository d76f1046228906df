"""How the gRPC services receive requests and turn failures into statuses.

A service may name an authorize hook: it runs first, before the request is even decoded, and
aborts the call when the caller may not make it. Requests are decoded inside the handler rather than by grpc: grpc answers UNKNOWN to bytes that
are not a valid message, and garbage deserves INVALID_ARGUMENT. Every server-side failure answers
UNAVAILABLE, which clients retry: a device keeps its records, and no INTERNAL or UNKNOWN status
(or a traceback in its details) ever reaches a client. The store is synchronous, so its calls run
in worker threads.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Awaitable, Callable

import grpc
from google.protobuf import message, message_factory
from google.protobuf.descriptor import ServiceDescriptor

from collector.store import StoreUnavailable

logger = logging.getLogger(__name__)

Handler = Callable[[message.Message, grpc.aio.ServicerContext], Awaitable[message.Message]]
# (method name, context) -> None, or aborts the call.
Authorize = Callable[[str, grpc.aio.ServicerContext], Awaitable[None]]


def add_service(
    server: grpc.aio.Server, service: ServiceDescriptor, servicer: object, *, authorize: Authorize | None = None
) -> None:
    """Serve the unary methods of `service` with the same-named coroutines of `servicer`,
    each call first cleared by `authorize` when one is given."""
    handlers = {
        method.name: grpc.unary_unary_rpc_method_handler(
            _guarded(
                method.full_name, message_factory.GetMessageClass(method.input_type), getattr(servicer, method.name),
                authorize and functools.partial(authorize, method.name),
            ),
            response_serializer=message_factory.GetMessageClass(method.output_type).SerializeToString,
        )
        for method in service.methods
    }
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(service.full_name, handlers),))


def _guarded(
    name: str,
    request_class: type[message.Message],
    handler: Handler,
    authorize: Callable[[grpc.aio.ServicerContext], Awaitable[None]] | None,
):
    async def handle(data: bytes, context: grpc.aio.ServicerContext) -> message.Message:
        try:
            if authorize is not None:
                await authorize(context)
            try:
                request = request_class.FromString(data)
            except message.DecodeError as err:
                await context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"not a valid {request_class.DESCRIPTOR.full_name}: {err}")
            return await handler(request, context)
        except grpc.aio.AbortError:
            raise
        except Exception:
            logger.exception("%s failed", name)
            await context.abort(grpc.StatusCode.UNAVAILABLE, f"the collector failed to handle {name}; retry later")

    return handle


async def call_store(context: grpc.aio.ServicerContext, method: Callable, *args, **kwargs):
    """Run a blocking store method off the event loop; StoreUnavailable aborts with UNAVAILABLE."""
    try:
        return await asyncio.to_thread(method, *args, **kwargs)
    except StoreUnavailable as err:
        logger.warning("store unavailable in %s: %s", method.__name__, err)
        await context.abort(grpc.StatusCode.UNAVAILABLE, f"the collector's store is unavailable, retry later: {err}")
