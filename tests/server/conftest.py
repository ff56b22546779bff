"""The manual-clock event loop that the protocol and cycle tests drive their connections on."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest
from tests.server.test_protocol import ManualClockLoop


@pytest.fixture
def loop() -> Iterator[ManualClockLoop]:
    running = ManualClockLoop()
    try:
        yield running
    finally:
        running.settle()
        for task in asyncio.all_tasks(running):
            task.cancel()
        running.settle()
        running.close()
