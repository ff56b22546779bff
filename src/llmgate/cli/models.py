"""``llmgate models``: the configured model groups and the catalogue, as tables or JSON."""

from __future__ import annotations

import json
import sys
from typing import Any

import click
from rich.console import Console
from rich.table import Table

from llmgate.cli.common import config_option, gateway_of


@click.command()
@config_option
@click.option("--search", "query", default=None, help="Text in a model's id or name.")
@click.option("--provider", default=None, help="Only this catalogue provider (openai, anthropic, ...).")
@click.option("--capability", default=None, help="Only models with it (chat, tools, vision, json, ...).")
@click.option("--json", "as_json", is_flag=True, help="One JSON document: {groups, models}.")
def models(
    *, config_path: str | None, query: str | None, provider: str | None, capability: str | None, as_json: bool
) -> None:
    """The model groups callers can ask for, then the catalogue's models (context, prices)."""
    gateway = gateway_of(config_path)
    found = [
        info.view()
        for info in gateway.catalogue.search(query=query, provider=provider, capability=capability)
    ]
    groups = [group for group in gateway.groups() if _group_matches(group, query, provider)]
    if as_json:
        sys.stdout.write(json.dumps({"groups": groups, "models": found}, indent=2) + "\n")
        return
    console = Console() if sys.stdout.isatty() else Console(width=160)
    if groups:
        console.print(_groups_table(groups))
    console.print(_models_table(found) if found else "no catalogue model matches")


def _group_matches(group: dict[str, Any], query: str | None, provider: str | None) -> bool:
    deployments = group["deployments"]
    if provider and not any(d["provider"] == provider for d in deployments):
        return False
    if not query:
        return True
    needle = query.lower()
    return needle in group["name"].lower() or any(needle in d["model"].lower() for d in deployments)


def _groups_table(groups: list[dict[str, Any]]) -> Table:
    table = Table(title="configured model groups")
    for heading in ("group", "deployments", "context", "fallbacks", "strategy", "overflow"):
        table.add_column(heading, justify="right" if heading == "context" else "left")
    for group in groups:
        windows = [d["context_length"] for d in group["deployments"] if d["context_length"]]
        table.add_row(
            group["name"],
            ", ".join(f"{d['provider']}:{d['model']}" for d in group["deployments"]),
            f"{min(windows):,}" if windows else "?",
            ", ".join(group["fallbacks"]) or "-",
            group["strategy"],
            group["context_overflow"],
        )
    return table


def _models_table(found: list[dict[str, Any]]) -> Table:
    table = Table(title=f"catalogue ({len(found)} models; USD per 1K tokens)")
    for heading in ("id", "provider", "context", "max out", "input", "output", "capabilities"):
        table.add_column(
            heading, justify="right" if heading in ("context", "max out", "input", "output") else "left"
        )
    for info in found:
        table.add_row(
            info["id"],
            info["provider"],
            f"{info['context_length']:,}",
            f"{info['max_output_tokens']:,}" if info["max_output_tokens"] else "-",
            _price(info["input_cost"]),
            _price(info["output_cost"]),
            ", ".join(info["capabilities"]),
        )
    return table


def _price(value: float | None) -> str:
    return "?" if value is None else f"{value:.5f}".rstrip("0").rstrip(".") or "0"
