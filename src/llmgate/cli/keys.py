"""``llmgate keys create|list|revoke``: virtual keys in the configured database."""

from __future__ import annotations

import time
from typing import Any

import click

from llmgate.cli.common import config_option, with_gateway


@click.group()
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
    view, secret = with_gateway(config_path, lambda gw: gw.keys.create(fields))
    click.echo(f"created {view['id']} ({view['name']})")
    click.echo(secret)


@keys.command("list")
@config_option
def keys_list(config_path: str | None) -> None:
    """List keys (never their secrets)."""
    rows = with_gateway(config_path, lambda gw: gw.keys.list())
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
    row = with_gateway(config_path, lambda gw: gw.keys.revoke(key_id))
    click.echo(f"revoked {row['id']} ({row['name']})")
