"""``llmgate batch INPUT.jsonl -o OUTPUT.jsonl``: an OpenAI batch file run through the gateway.

In-process (``--config``) or against a running gateway (``--url``, ``--key``). Every input line is checked
before anything is sent; killed and run again with the same arguments, it skips what the output already
answers. A progress bar on a terminal, a progress line every few seconds otherwise (both on stderr).
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import click
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from llmgate.batch import Progress as Figures
from llmgate.batch.local import LocalSender, check_body
from llmgate.batch.remote import RemoteSender
from llmgate.batch.resumable import BatchFile, Finished, InputProblems, OutputBusy
from llmgate.batch.runner import Sender
from llmgate.cli.common import config_option, settings_of
from llmgate.core.caller import ANONYMOUS
from llmgate.gateway import Gateway

PLAIN_EVERY_S = 5.0
EXIT_STOPPED = 3


@click.command()
@config_option
@click.argument("source", metavar="INPUT", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False, path_type=Path))
@click.option("--concurrency", type=click.IntRange(1, 4096), default=8, show_default=True)
@click.option("--retries", type=click.IntRange(0, 100), default=5, show_default=True, help="Per line.")
@click.option("--url", default=None, help="A running gateway's base URL (e.g. http://127.0.0.1:8000/v1).")
@click.option("--key", default=None, envvar="LLMGATE_API_KEY", help="Its API key (or LLMGATE_API_KEY).")
@click.option("--no-progress", is_flag=True, help="Print progress lines, not a bar, even on a terminal.")
def batch(
    *,
    config_path: str | None,
    source: Path,
    output: Path,
    concurrency: int,
    retries: int,
    url: str | None,
    key: str | None,
    no_progress: bool,
) -> None:
    """Run an OpenAI batch file (custom_id, method, url, body per line); resumable."""
    if output.resolve() == source.resolve():
        raise click.UsageError("the output must be another file than the input")
    run = _Run(config_path, source, output, concurrency, retries, url, key, no_progress)
    try:
        finished = asyncio.run(run.run())
    except KeyboardInterrupt:
        click.echo("llmgate: interrupted; run the same command again to finish", err=True)
        sys.exit(130)
    except (InputProblems, OutputBusy) as error:
        _refuse(error)
    figures = finished.progress
    plan = finished.plan
    click.echo(
        f"llmgate: {plan.lines:,} lines: {plan.done:,} answered before, {finished.written:,} now "
        f"({figures.failed:,} failed) · {_tokens(figures)} · {_cost(figures)} -> {output}",
        err=True,
    )
    if finished.stopped is not None:
        click.echo(f"llmgate: stopped early: {finished.stopped}; run again to finish", err=True)
        sys.exit(EXIT_STOPPED)


@dataclass(frozen=True, slots=True)
class _Run:
    """One ``llmgate batch`` invocation."""

    config_path: str | None
    source: Path
    output: Path
    concurrency: int
    retries: int
    url: str | None
    key: str | None
    no_progress: bool

    async def run(self) -> Finished:
        """Check, plan, run, and close what was opened."""
        output = self.output
        gateway = None if self.url is not None else Gateway(settings_of(self.config_path))
        sender: Sender
        if gateway is None:
            remote = sender = RemoteSender(self.url or "", self.key, concurrency=self.concurrency)
            file = BatchFile(self.source, output)
        else:
            caller = replace(ANONYMOUS, batch_id=f"file:{output.name}"[:128])
            sender, remote = LocalSender(gateway, caller=caller), None
            file = BatchFile(self.source, output, check=check_body(gateway))
        try:
            plan = await asyncio.to_thread(file.open)  # two passes over the input: off the loop
            click.echo(
                f"llmgate: {plan.lines:,} lines, {plan.done:,} already in {output}, {plan.left:,} to run",
                err=True,
            )
            show = _Bar() if sys.stderr.isatty() and not self.no_progress else _Lines()
            with show:
                return await file.run(
                    sender, concurrency=self.concurrency, retries=self.retries, on_progress=show.update
                )
        finally:
            file.close()
            if remote is not None:
                await remote.close()
            if gateway is not None:
                await gateway.close()


def _refuse(error: Exception) -> None:
    if isinstance(error, InputProblems):
        for problem in error.problems:
            click.echo(f"llmgate: {problem}", err=True)
        more = error.count - len(error.problems)
        click.echo(
            f"llmgate: {error.count} input line(s) cannot run{f' ({more} more not shown)' if more else ''}; "
            "nothing was sent",
            err=True,
        )
    else:
        click.echo(f"llmgate: {error}", err=True)
    sys.exit(2)


class _Bar:
    """A rich progress bar: done / total, failed, rate, ETA, tokens, cost."""

    def __init__(self) -> None:
        self.bar = Progress(
            TextColumn("batch"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[line]}"),
            TimeRemainingColumn(),
            console=Console(stderr=True),
        )
        self.task = self.bar.add_task("batch", total=None, line="")

    def __enter__(self) -> _Bar:
        self.bar.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.bar.stop()

    def update(self, figures: Figures) -> None:
        line = f"{figures.failed:,} failed · {figures.rate:,.1f}/s · {_tokens(figures)} · {_cost(figures)}"
        self.bar.update(self.task, completed=figures.done, total=figures.total, line=line)


class _Lines:
    """A progress line on stderr every few seconds (not a terminal: a log, CI)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._next = clock() + PLAIN_EVERY_S

    def __enter__(self) -> _Lines:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def update(self, figures: Figures) -> None:
        if self._clock() < self._next and figures.done != figures.total:
            return
        self._next = self._clock() + PLAIN_EVERY_S
        eta = f"{figures.eta:,.0f}s left" if figures.eta is not None else "?"
        click.echo(
            f"progress: {figures.done:,}/{figures.total or 0:,} done, {figures.failed:,} failed, "
            f"{figures.rate:,.1f}/s, {eta}, {_tokens(figures)}, {_cost(figures)}",
            err=True,
        )


def _tokens(figures: Figures) -> str:
    return f"{figures.prompt_tokens + figures.completion_tokens:,} tokens"


def _cost(figures: Figures) -> str:
    unpriced = f" (+{figures.unpriced:,} unpriced)" if figures.unpriced else ""
    return f"${figures.cost:.4f}{unpriced}"
