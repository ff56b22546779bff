"""``llmgate usage``: the usage report of the configured database (SQLite or PostgreSQL), as a table, CSV
or JSONL."""

from __future__ import annotations

import sys
from typing import Any

import click
from rich.console import Console
from rich.table import Table

from llmgate.cli.common import config_option, with_gateway
from llmgate.gateway import Gateway

GROUPINGS = ("provider", "model", "key", "group", "day", "hour", "all")


@click.command()
@config_option
@click.option("--since", default=None, help="Unix seconds or an ISO date/time (UTC), e.g. 2026-12-01.")
@click.option("--until", default=None, help="Unix seconds or an ISO date/time (UTC); excluded.")
@click.option("--by", "group_by", type=click.Choice(GROUPINGS), default="group", show_default=True)
@click.option("--key", "key_id", default=None, help="One virtual key's calls only (its id).")
@click.option(
    "--format", "fmt", type=click.Choice(["table", "csv", "jsonl"]), default="table", show_default=True
)
def usage(
    *,
    config_path: str | None,
    since: str | None,
    until: str | None,
    group_by: str,
    key_id: str | None,
    fmt: str,
) -> None:
    """Usage totals per provider, model, key, group, day or hour."""

    async def report(gateway: Gateway) -> list[dict[str, Any]]:
        return await gateway.usage(
            since=gateway.parse_time(since, "since"),
            until=gateway.parse_time(until, "until"),
            group_by=group_by,
            key_id=key_id,
        )

    rows = with_gateway(config_path, report)
    if fmt == "table":
        _table(rows, group_by)
        return
    body, _ = Gateway.render_report(rows, fmt)
    sys.stdout.buffer.write(body)


def _table(rows: list[dict[str, Any]], group_by: str) -> None:
    table = Table(title=f"usage by {group_by}", show_footer=bool(rows))
    columns = (
        (group_by, "group", str),
        ("requests", "requests", "{:,}".format),
        ("errors", "errors", "{:,}".format),
        ("prompt", "prompt_tokens", "{:,}".format),
        ("completion", "completion_tokens", "{:,}".format),
        ("cached", "cached_tokens", "{:,}".format),
        ("cost USD", "cost_usd", "{:.4f}".format),
        ("unpriced", "cost_unknown", "{:,}".format),
        ("cache hits", "cache_hits", "{:,}".format),
        ("p50 ms", "p50_latency_ms", "{:.1f}".format),
        ("p95 ms", "p95_latency_ms", "{:.1f}".format),
    )
    totals = {name: sum(row[name] for row in rows) for _, name, _ in columns[1:9]}
    for heading, name, show in columns:
        footer = "total" if name == "group" else (show(totals[name]) if name in totals else "")
        table.add_column(heading, justify="left" if name == "group" else "right", footer=footer)
    for row in rows:
        table.add_row(*(show(row[name]) for _, name, show in columns))
    console = Console() if sys.stdout.isatty() else Console(width=180)  # a pipe gets whole columns
    console.print(table if rows else "no usage in that period")
