"""The ``llmgate`` command."""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import os
import signal
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import click
import uvicorn

from llmgate.config import ConfigError, Settings, load_settings
from llmgate.core.errors import GatewayError
from llmgate.gateway import Gateway
from llmgate.server.app import create_app, tune_process

log = logging.getLogger("llmgate")


config_option = click.option(
    "--config",
    "config_path",
    type=click.Path(dir_okay=False),
    default=None,
    envvar="LLMGATE_CONFIG",
    help="YAML config file (default: environment only).",
)


@click.group()
@click.version_option(package_name="llmgate")
def main() -> None:
    """llmgate: one OpenAI-compatible API in front of many LLM providers."""


@main.command()
@config_option
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
    if workers > 1 and not settings.storage.redis:
        log.warning(
            "%d workers without Redis: each keeps its own counters, so rate limits, budgets, breakers and "
            "round-robin positions are per process (set storage.redis to share them exactly)",
            workers,
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


@main.group()
def keys() -> None:
    """Manage virtual keys in the configured database (storage.database)."""


@keys.command("create")
@config_option
@click.option("--name", required=True, help="A name for the key (who or what uses it).")
@click.option("--models", default=None, help="Comma-separated models the key may use (default: all).")
@click.option("--rpm", type=click.IntRange(min=1), default=None, help="Requests per minute.")
@click.option("--tpm", type=click.IntRange(min=1), default=None, help="Tokens per minute.")
@click.option("--max-parallel", type=click.IntRange(min=1), default=None, help="Requests at once.")
@click.option("--budget", type=click.FloatRange(min=0), default=None, help="Budget in USD.")
@click.option("--period", type=click.Choice(["day", "month", "total"]), default="total", show_default=True)
@click.option("--expires-in-days", type=click.FloatRange(min=0, min_open=True), default=None)
def keys_create(config_path: str | None, **options: Any) -> None:
    """Create a key and print it (it is shown only once)."""
    fields: dict[str, Any] = {
        "name": options["name"],
        "rpm": options["rpm"],
        "tpm": options["tpm"],
        "max_parallel": options["max_parallel"],
        "budget_usd": options["budget"],
        "budget_period": options["period"],
    }
    if options["models"]:
        fields["models"] = [m.strip() for m in options["models"].split(",") if m.strip()]
    if options["expires_in_days"] is not None:
        fields["expires_at"] = time.time() + options["expires_in_days"] * 86_400
    view, secret = _with_gateway(config_path, lambda gw: gw.create_key(fields))
    click.echo(f"created {view['id']} ({view['name']})")
    click.echo(secret)


@keys.command("list")
@config_option
def keys_list(config_path: str | None) -> None:
    """List keys (never their secrets)."""
    rows = _with_gateway(config_path, lambda gw: gw.list_keys())
    for row in rows:
        click.echo(_key_line(row))
    if not rows:
        click.echo("no keys")


def _key_line(row: dict[str, Any]) -> str:
    """One key as ``keys list`` shows it: id, prefix, state, name, models, limits, budget and period."""
    state = "revoked" if row["revoked"] else "active"
    models = ",".join(row["models"]) if row["models"] else "all models"
    limits = [f"{name}={row[name]}" for name in ("rpm", "tpm", "max_parallel") if row[name] is not None]
    if row["budget_usd"] is not None:
        limits.append(f"budget=${row['budget_usd']:g}/{row['budget_period']}")
    if row["expires_at"] is not None:
        limits.append(f"expires={time.strftime('%Y-%m-%d %H:%M', time.gmtime(row['expires_at']))}Z")
    return "  ".join(
        [
            row["id"],
            f"{row['key_prefix']}...",
            f"{state:7}",
            row["name"],
            models,
            ", ".join(limits) or "no limits",
        ]
    )


@keys.command("revoke")
@config_option
@click.argument("key_id")
def keys_revoke(config_path: str | None, key_id: str) -> None:
    """Revoke a key by id: it stops working."""
    row = _with_gateway(config_path, lambda gw: gw.revoke_key(key_id))
    click.echo(f"revoked {row['id']} ({row['name']})")


T = TypeVar("T")


def _with_gateway(config_path: str | None, action: Callable[[Gateway], Awaitable[T]]) -> T:
    settings = _settings(config_path)

    async def run() -> T:
        async with Gateway(settings) as gateway:
            return await action(gateway)

    try:
        return asyncio.run(run())
    except GatewayError as exc:
        click.echo(f"llmgate: {exc.message}", err=True)
        sys.exit(1)


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
