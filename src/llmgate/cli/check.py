"""``llmgate check``: the config validated (file, line, field; every reference), then each provider
probed cheaply. Exit code 0 when everything holds, 1 otherwise."""

from __future__ import annotations

import asyncio
import json
import sys
from typing import Any

import click
from rich.console import Console
from rich.table import Table

from llmgate.cli.common import config_option
from llmgate.config import ConfigError, load_settings
from llmgate.gateway import Gateway


@click.command()
@config_option
@click.option(
    "--probe", "call", is_flag=True, help="Also make a one-token call to providers without a model list."
)
@click.option("--json", "as_json", is_flag=True, help="The results as JSON: {providers, key_problems}.")
def check(*, config_path: str | None, call: bool, as_json: bool) -> None:
    """Validate the config and probe each provider: reachable, key accepted, latency, models found."""
    try:
        gateway = Gateway(load_settings(config_path))
    except ConfigError as invalid:  # named by file, line and field
        click.echo(f"llmgate: {invalid}", err=True)
        sys.exit(1)
    results, keys = asyncio.run(_probe(gateway, call))
    if as_json:
        sys.stdout.write(json.dumps({"providers": results, "key_problems": keys}, indent=2) + "\n")
    else:
        console = Console() if sys.stdout.isatty() else Console(width=160)
        console.print(f"config {gateway.settings.source}: valid ({len(gateway.groups())} model groups)")
        for problem in keys:
            console.print(problem, style="red", markup=False)
        console.print(_table(results))
    sys.exit(0 if all(result["ok"] for result in results) and not keys else 1)


async def _probe(gateway: Gateway, call: bool) -> tuple[list[dict[str, Any]], list[str]]:
    """The providers probed, and the virtual keys (in the configured database) naming unserved models."""
    async with gateway:
        return await gateway.probe(call=call), list(await gateway.keys.unserved())


HEADINGS = ("provider", "type", "probe", "reachable", "key accepted", "latency ms", "models", "error")


def _table(results: list[dict[str, Any]]) -> Table:
    table = Table(title="providers")
    for heading in HEADINGS:
        table.add_column(heading, justify="right" if heading in ("latency ms", "models") else "left")
    for r in results:
        latency, found = r["latency_ms"], r["models"]
        table.add_row(
            r["provider"],
            r["type"],
            r["method"],
            _yes_no(r["reachable"]),
            _yes_no(r["key_accepted"]),
            f"{latency:.0f}" if latency is not None else "-",
            str(found) if found is not None else "-",
            r["error"] or "",
        )
    return table


def _yes_no(value: bool | None) -> str:
    return "-" if value is None else ("yes" if value else "NO")
