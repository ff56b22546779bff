"""What every ``llmgate`` command shares: the ``--config`` option, loading settings, a gateway for the
length of one command."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Awaitable, Callable
from typing import TypeVar

import click

from llmgate.config import ConfigError, Settings, load_settings
from llmgate.core.errors import GatewayError
from llmgate.gateway import Gateway

T = TypeVar("T")

config_option = click.option(
    "--config",
    "config_path",
    type=click.Path(dir_okay=False),
    default=None,
    envvar="LLMGATE_CONFIG",
    help="YAML config file (default: environment only).",
)


def settings_of(path: str | None) -> Settings:
    """The settings, or exit 2 with the config error (file, line, field)."""
    try:
        return load_settings(path)
    except ConfigError as exc:
        click.echo(f"llmgate: {exc}", err=True)
        sys.exit(2)


def gateway_of(config_path: str | None) -> Gateway:
    """A gateway built from the config, or exit 2 naming what is wrong in it (a reference included)."""
    settings = settings_of(config_path)
    try:
        return Gateway(settings)
    except ConfigError as exc:
        click.echo(f"llmgate: {exc}", err=True)
        sys.exit(2)


def with_gateway(config_path: str | None, action: Callable[[Gateway], Awaitable[T]]) -> T:
    """Run ``action`` on a gateway built from the config, closed afterwards; a gateway error exits 1."""
    settings = settings_of(config_path)

    async def run() -> T:
        async with Gateway(settings) as gateway:
            return await action(gateway)

    try:
        return asyncio.run(run())
    except GatewayError as exc:
        click.echo(f"llmgate: {exc.message}", err=True)
        sys.exit(1)
