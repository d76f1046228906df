"""The collector process: the gRPC server and the HTTP API on one asyncio loop, over one store.

gRPC carries infermeter.v1.Ingest (devices), infermeter.v1.Admin (operators), health checking
and reflection; HTTP carries the JSON API (collector.http_api) and /metrics, from the
servers' own registry (collector.metrics).

With a certificate and key (collector.tls) both servers speak TLS, and gRPC may require client
certificates (mutual TLS); without them, plaintext, for loopback and trusted networks: both
bind to 127.0.0.1 by default, and listening anywhere else without TLS logs a warning, since
device and admin tokens would cross the network readable.

SIGTERM or SIGINT stops it gracefully: the health service says NOT_SERVING, both servers stop
accepting, in-flight calls get GRACE_S to finish (a Push that has committed still gets its
reply), then the store is closed and serve() returns 0.

With retain_raw_days, raw records older than that are pruned (collector.retention) at start and
then every PRUNE_INTERVAL_S, on a worker thread. Two more tasks run throughout: the budgets'
forecast and anomaly alerts (collector.budget_alerts, at start and then hourly) and webhook
delivery (collector.webhooks); both stop with the servers, a send in flight finishing first.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
from dataclasses import dataclass
from pathlib import Path

import grpc
from aiohttp import web
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from infermeter.v1 import admin_pb2, ingest_pb2
from sqlalchemy.engine import make_url

from agent.files import write_atomically
from collector.admin_service import AdminServicer
from collector.budget_alerts import BudgetAlerts
from collector.http_api import make_app
from collector.ingest_service import MAX_MESSAGE_BYTES, IngestServicer
from collector.metrics import CollectorMetrics
from collector.params import format_address, parse_address
from collector.periodic import periodically
from collector.retention import RawRetention
from collector.rpc import add_service
from collector.store import Store
from collector.tls import ServerTls, is_loopback
from collector.webhooks import WebhookSender

logger = logging.getLogger(__name__)

GRACE_S = 10.0
PRUNE_INTERVAL_S = 3_600.0
INGEST = ingest_pb2.DESCRIPTOR.services_by_name["Ingest"]
ADMIN = admin_pb2.DESCRIPTOR.services_by_name["Admin"]
SERVICE_NAMES = (INGEST.full_name, ADMIN.full_name)


@dataclass
class Servers:
    """Both servers, listening; the addresses carry the ports actually bound."""

    grpc_server: grpc.aio.Server
    health: health.aio.HealthServicer
    http_runner: web.AppRunner
    grpc_address: str
    http_address: str
    grace_s: float
    tls: bool = False

    @property
    def http_url(self) -> str:
        return f"{'https' if self.tls else 'http'}://{self.http_address}"

    async def stop(self) -> None:
        """Stop accepting calls; those in flight get grace_s to finish."""
        # NOT_SERVING first, so load balancers drain this replica while calls finish.
        await self.health.enter_graceful_shutdown()
        await asyncio.gather(self.grpc_server.stop(self.grace_s), self.http_runner.cleanup())


async def start_servers(
    store: Store, *, grpc_address: str, http_address: str, grace_s: float = GRACE_S, tls: ServerTls | None = None
) -> Servers:
    """Start both servers on the running loop; port 0 picks a free port. tls: both servers
    speak TLS (gRPC asks for client certificates if it has a client CA)."""
    grpc_host, _ = parse_address(grpc_address)
    http_host, http_port = parse_address(http_address)
    if tls is None:
        _warn_if_exposed("gRPC", grpc_host)
        _warn_if_exposed("HTTP", http_host)
    metrics = CollectorMetrics(store)
    runner = web.AppRunner(make_app(store, metrics=metrics), shutdown_timeout=grace_s)
    server, health_servicer = await _grpc_server(store, metrics)
    try:
        if tls is None:
            bound_grpc_port = server.add_insecure_port(grpc_address)
        else:
            bound_grpc_port = server.add_secure_port(grpc_address, tls.grpc_credentials())
    except RuntimeError:
        raise OSError(f"cannot listen for gRPC on {grpc_address}: the address is in use or not available") from None
    await server.start()
    try:
        await runner.setup()
        ssl_context = tls.ssl_context() if tls is not None else None
        await web.TCPSite(runner, http_host, http_port, ssl_context=ssl_context).start()
    except BaseException:
        await asyncio.gather(server.stop(None), runner.cleanup())
        raise
    bound_http_port = runner.addresses[0][1]
    return Servers(
        server, health_servicer, runner,
        format_address(grpc_host, bound_grpc_port), format_address(http_host, bound_http_port), grace_s,
        tls=tls is not None,
    )


def _warn_if_exposed(what: str, host: str) -> None:
    if not is_loopback(host):
        logger.warning(
            "%s listens on %s without TLS: device and admin tokens cross the network readable; "
            "give --tls-cert and --tls-key unless the network itself is trusted", what, host,
        )


async def _grpc_server(store: Store, metrics: CollectorMetrics) -> tuple[grpc.aio.Server, health.aio.HealthServicer]:
    # so_reuseport off: a second collector on the same port must fail, not share the traffic.
    options = [("grpc.max_receive_message_length", MAX_MESSAGE_BYTES), ("grpc.so_reuseport", 0)]
    server = grpc.aio.server(options=options)
    add_service(server, INGEST, IngestServicer(store, metrics=metrics))
    admin = AdminServicer(store)
    add_service(server, ADMIN, admin, authorize=admin.authorize)
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    for name in ("", *SERVICE_NAMES):
        await health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    reflection.enable_server_reflection((*SERVICE_NAMES, health.SERVICE_NAME, reflection.SERVICE_NAME), server)
    return server, health_servicer


def write_ready_file(path: Path, servers: Servers) -> None:
    """Atomically: a reader sees no file or the whole of it, never half."""
    write_atomically(path, json.dumps({
        "grpc": servers.grpc_address, "http": servers.http_address, "tls": servers.tls, "pid": os.getpid(),
    }))


async def keep_pruning(retention: RawRetention, stop: asyncio.Event, *, interval_s: float = PRUNE_INTERVAL_S) -> None:
    """Run the retention policy now and then every interval_s until stop is set."""
    await periodically(
        lambda: asyncio.to_thread(retention.run_once), stop, interval_s=interval_s, what="raw-record retention"
    )


async def _run(
    store: Store, db_url: str, grpc_address: str, http_address: str, ready_file: Path | None, tls: ServerTls | None,
    retention: RawRetention | None,
) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    servers = await start_servers(store, grpc_address=grpc_address, http_address=http_address, tls=tls)
    logger.info(
        "collector serving gRPC on %s (%s) and HTTP on %s, store %s",
        servers.grpc_address, _grpc_security(tls), servers.http_url,
        make_url(db_url).render_as_string(hide_password=True),
    )
    if ready_file is not None:
        write_ready_file(ready_file, servers)
    pruning = asyncio.create_task(keep_pruning(retention, stop)) if retention is not None else None
    background = [
        asyncio.create_task(BudgetAlerts(store).run(stop)),
        asyncio.create_task(WebhookSender(store).run(stop)),
    ]
    try:
        await stop.wait()
        logger.info("stopping: finishing in-flight calls (up to %.0f s)", GRACE_S)
    finally:
        stop.set()
        await servers.stop()
        if pruning is not None:
            await pruning  # a prune page in flight ends with its transaction
        await asyncio.gather(*background)
        if ready_file is not None:
            ready_file.unlink(missing_ok=True)


def _grpc_security(tls: ServerTls | None) -> str:
    if tls is None:
        return "plaintext"
    return "TLS, client certificates required" if tls.client_ca is not None else "TLS"


def serve(
    db_url: str,
    grpc_address: str = "127.0.0.1:50051",
    http_address: str = "127.0.0.1:8080",
    ready_file: str | os.PathLike | None = None,
    tls: ServerTls | None = None,
    *,
    retain_raw_days: int | None = None,
) -> int:
    """Run the collector until SIGTERM/SIGINT; the exit code (0 after a graceful stop).
    retain_raw_days: prune raw records older than that many days (None: keep them forever)."""
    store = Store.open(db_url)
    try:
        retention = RawRetention(store, retain_raw_days=retain_raw_days) if retain_raw_days is not None else None
        asyncio.run(_run(
            store, db_url, grpc_address, http_address, Path(ready_file) if ready_file else None, tls, retention
        ))
    finally:
        # asyncio.run has waited for the worker threads, so no store call is still running.
        store.close()
    logger.info("collector stopped")
    return 0
