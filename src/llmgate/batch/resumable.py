"""``llmgate batch INPUT -o OUTPUT``: a batch file run that can be killed at any moment and run again.

The output file is the only record. Each result is appended as one whole line with one ``write`` to an
unbuffered file as soon as it is known, so a kill (SIGKILL included) loses at most the lines in flight
and, at worst, leaves the last line torn. A run first cuts a torn last line off, skips every custom_id
the output already has, and runs the rest: the output ends with exactly one line per input line.

The input is read twice, never held: once to check every line before any spend (problems are reported
with their line numbers), once to run. A lock on the output keeps two runs from writing one file.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from llmgate.batch.lines import (
    BatchLine,
    BodyCheck,
    Checker,
    DoneSet,
    LineProblem,
    LineSplitter,
    digest,
    parse_line,
)
from llmgate.batch.results import Progress, done_custom_id
from llmgate.batch.runner import RetryPolicy, Runner, Sender

READ_BYTES = 1 << 20


class InputProblems(Exception):
    """The input has lines that cannot run; nothing was sent."""

    def __init__(self, problems: list[LineProblem], count: int) -> None:
        super().__init__(f"{count} input line(s) cannot run")
        self.problems = problems
        self.count = count


class OutputBusy(Exception):
    """Another run is writing the same output file."""


@dataclass(frozen=True, slots=True)
class Plan:
    """What a run will do: the input's lines, and how many the output already answers."""

    lines: int
    done: int

    @property
    def left(self) -> int:
        """Lines still to run."""
        return self.lines - self.done


@dataclass(frozen=True, slots=True)
class Finished:
    """How a run ended."""

    plan: Plan
    written: int
    progress: Progress
    stopped: str | None
    """Why lines were left unanswered (a spent budget): run again to do them."""

    @property
    def complete(self) -> bool:
        """Whether the output now answers every input line."""
        return self.plan.done + self.written == self.plan.lines


def input_lines(path: Path) -> Iterator[bytes]:
    """The input's lines without their line ends (a last line without one included), read in blocks."""
    splitter = LineSplitter()
    with path.open("rb") as file:
        while block := file.read(READ_BYTES):
            yield from splitter.feed(block)
    last = splitter.end()
    if last is not None:
        yield last


def check_input(path: Path, check: BodyCheck | None) -> int:
    """Check every line (``InputProblems`` if any cannot run); the number of lines."""
    checker = Checker(check)
    for raw in input_lines(path):
        checker.feed(raw)
    problems = checker.finish()
    if problems:
        raise InputProblems(problems, checker.problem_count)
    return checker.lines


class BatchFile:
    """One input file and its output file."""

    def __init__(self, source: Path, output: Path, *, check: BodyCheck | None = None) -> None:
        self.source = source
        self.output = output
        self.check = check
        self._fd: int | None = None
        self._done = DoneSet(b"")
        self.plan = Plan(0, 0)

    def open(self) -> Plan:
        """Check the input, lock the output, cut a torn last line, read what is done."""
        lines = check_input(self.source, self.check)
        fd = os.open(self.output, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise OutputBusy(f"another llmgate batch is writing {self.output}") from None
        self._fd = fd
        _cut_torn_line(fd)
        self._done = DoneSet(_answered(self.output))
        pending = sum(1 for _ in self._pending())
        self.plan = Plan(lines, lines - pending)
        return self.plan

    def _pending(self) -> Iterator[BatchLine]:
        """The input's lines the output does not answer (checked already: parsed, not checked again)."""
        for index, raw in enumerate(input_lines(self.source)):
            if done_custom_id(raw) in self._done:  # only the id is decoded for lines already answered
                continue
            line = parse_line(raw, index)
            if isinstance(line, BatchLine):
                yield line

    async def run(
        self,
        sender: Sender,
        *,
        concurrency: int,
        retries: int = 5,
        on_progress: Callable[[Progress], None] | None = None,
    ) -> Finished:
        """Run the lines the output does not answer yet, appending each result as it comes (``open``
        first)."""
        if self._fd is None:
            raise RuntimeError("open the batch file before running it")
        plan = self.plan
        runner = Runner(
            sender,
            concurrency=concurrency,
            retry=RetryPolicy(retries=retries),
            on_progress=on_progress,
            total=plan.left,
        )
        written = 0
        try:
            async for result in runner.results(_async(self._pending())):
                _append(self._fd, result.line() + b"\n")
                written += 1
        finally:
            self.close()
        return Finished(plan, written, runner.progress, runner.stopped)

    def close(self) -> None:
        """Release the output (its lock goes with it)."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def _append(fd: int, data: bytes) -> None:
    """One line, whole (a short write, as on a full disk, is finished or raises)."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _cut_torn_line(fd: int) -> None:
    """Drop a last line without its newline: the write a kill interrupted (its item runs again)."""
    size = os.fstat(fd).st_size
    if not size or os.pread(fd, 1, size - 1) == b"\n":
        return
    keep, position = 0, size
    while position > 0:
        start = max(0, position - READ_BYTES)
        block = os.pread(fd, position - start, start)
        at = block.rfind(b"\n")
        if at >= 0:
            keep = start + at + 1
            break
        position = start
    os.ftruncate(fd, keep)


def _answered(output: Path) -> bytearray:
    """The digests of the custom_ids the output answers, one after the other (16 bytes each)."""
    digests = bytearray()
    for line in input_lines(output):
        custom_id = done_custom_id(line) if line.strip() else None
        if custom_id is not None:
            digests += digest(custom_id)
    return digests


async def _async(lines: Iterator[BatchLine]) -> AsyncIterator[BatchLine]:
    for line in lines:
        yield line
