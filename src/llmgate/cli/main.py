"""The ``llmgate`` command."""

from __future__ import annotations

import ipaddress
import logging
import os
import signal
import sys
from pathlib import Path

import click
import uvicorn

from llmgate.config import ConfigError, Settings, load_settings
from llmgate.server.app import create_app, tune_process

log = logging.getLogger("llmgate")


@click.group()
@click.version_option(package_name="llmgate")
def main() -> None:
    """llmgate: one OpenAI-compatible API in front of many LLM providers."""


@main.command()
@click.option(
    "--config",
    "config_path",
    type=click.Path(dir_okay=False),
    default=None,
    envvar="LLMGATE_CONFIG",
    help="YAML config file (default: environment only).",
)
@click.option("--host", default=None, help="Interface to bind (default: server.host, 127.0.0.1).")
@click.option("--port", type=int, default=None, help="Port (default: server.port, 8000).")
@click.option("--workers", type=click.IntRange(min=1), default=1, show_default=True, help="Worker processes.")
@click.option(
    "--log-level", type=click.Choice(["debug", "info", "warning", "error"]), default="info", show_default=True
)
def serve(config_path: str | None, host: str | None, port: int | None, workers: int, log_level: str) -> None:
    """Run the HTTP gateway."""
    logging.basicConfig(level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    settings = _settings(config_path)
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
    if workers > 1:
        log.warning(
            "%d workers: each keeps its own state (limits are per process until Redis is configured)", workers
        )
    # uvicorn re-raises a handled SIGTERM after draining; default handling would exit -15, not 0.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    if workers > 1 and config_path is not None:
        # Worker processes build their own app from LLMGATE_CONFIG: hand them the same file.
        os.environ["LLMGATE_CONFIG"] = str(Path(config_path).resolve())
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
        http="httptools",
        access_log=False,
        log_level=log_level,
        timeout_graceful_shutdown=int(grace) if grace else None,
        server_header=False,
        proxy_headers=False,
    )


def _settings(path: str | None) -> Settings:
    try:
        return load_settings(path)
    except ConfigError as exc:
        click.echo(f"llmgate: {exc}", err=True)
        sys.exit(2)


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


if __name__ == "__main__":
    main()
