"""``llmgate serve``: the HTTP gateway under uvicorn, with llmgate's own connection protocol and logs."""

from __future__ import annotations

import atexit
import ipaddress
import logging
import os
import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path

import click
import uvicorn

from llmgate.cli.common import config_option, settings_of
from llmgate.server.app import create_app, tune_process
from llmgate.server.logs import configure as configure_logs
from llmgate.server.protocol import protocol_factory

log = logging.getLogger("llmgate")


@click.command()
@config_option
@click.option("--host", default=None, help="Interface to bind (default: server.host, 127.0.0.1).")
@click.option("--port", type=int, default=None, help="Port (default: server.port, 8000).")
@click.option("--workers", type=click.IntRange(min=1), default=1, show_default=True, help="Worker processes.")
@click.option(
    "--log-level",
    type=click.Choice(["debug", "info", "warning", "error"]),
    default=None,
    help="Log level (default: log.level, info).",
)
@click.option(
    "--cache-size",
    type=click.IntRange(min=1),
    default=None,
    help="Response cache entries (cache.max_entries).",
)
def serve(
    *,
    config_path: str | None,
    host: str | None,
    port: int | None,
    workers: int,
    log_level: str | None,
    cache_size: int | None,
) -> None:
    """Run the HTTP gateway."""
    if cache_size is not None:  # through the environment, so that worker processes get it too
        os.environ["LLMGATE_CACHE_SIZE"] = str(cache_size)
    if log_level is not None:
        os.environ["LLMGATE_LOG_LEVEL"] = log_level
    settings = settings_of(config_path)
    log_level = log_level or settings.log.level
    listener = configure_logs(format=settings.log.format, level=log_level)
    atexit.register(listener.stop)
    host = host or settings.server.host
    port = port if port is not None else settings.server.port
    if settings.server.master_key is None:
        if not _is_loopback(host):
            raise click.UsageError(
                f"refusing to bind {host} without authentication: set LLMGATE_MASTER_KEY "
                "(or server.master_key) to serve beyond this machine"
            )
        log.warning(
            "open mode: no master key is set, so llmgate accepts unauthenticated calls and "
            "listens on %s only",
            host,
        )
    providers = ", ".join(f"{name} ({p.type})" for name, p in settings.providers.items())
    log.info("llmgate on http://%s:%d - providers: %s", host, port, providers)
    grace = settings.server.grace_period or None
    if workers > 1 and not settings.storage.redis:
        log.warning(
            "%d workers without Redis: each keeps its own counters, so rate limits, budgets, breakers and "
            "round-robin positions are per process (set storage.redis to share them exactly)",
            workers,
        )
    # uvicorn re-raises a handled SIGTERM after draining; default handling would exit -15, not 0.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    if workers > 1:  # the workers' "since start" figures (/api/stats) begin when the server did
        os.environ["LLMGATE_STARTED_AT"] = repr(time.time())
    if workers > 1 and config_path is not None:
        # Worker processes build their own app from LLMGATE_CONFIG: hand them the same file.
        os.environ["LLMGATE_CONFIG"] = str(Path(config_path).resolve())
    if workers > 1 and not settings.server.metrics_dir:
        # Every worker's counters in one place, so any worker's /metrics has them all.
        metrics_dir = tempfile.mkdtemp(prefix="llmgate-metrics-")
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir
        atexit.register(shutil.rmtree, metrics_dir, ignore_errors=True)
    app = None if workers > 1 else create_app(settings=settings)
    if app is not None:
        tune_process()
    uvicorn.run(
        "llmgate.server.app:app_from_environment" if app is None else app,
        factory=workers > 1,
        workers=workers,
        host=host,
        port=port,
        loop="uvloop",
        # httptools with the header/body clocks, the connection cap and JSON protocol errors; its
        # max_connections replaces uvicorn's limit_concurrency (a 503 in text), which is left unset.
        http=protocol_factory(settings.server),
        ws="none",  # no WebSocket routes: an Upgrade request is served as the plain HTTP it also is
        access_log=False,
        log_level=log_level,
        log_config=None,  # uvicorn's loggers go through llmgate's queued writer too
        timeout_graceful_shutdown=int(grace) if grace else None,
        server_header=False,
        proxy_headers=False,
    )


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
