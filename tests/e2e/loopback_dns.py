"""Run ``llmgate`` with test host names resolved to 127.0.0.1 -- what an ``/etc/hosts`` line would do.

    python tests/e2e/loopback_dns.py serve --config FILE --port N

The Azure adapter tells Azure AI Foundry from Azure OpenAI by the endpoint's host name
(``*.services.ai.azure.com``), so the Foundry recordings can only be replayed at such a name. This
launcher resolves exactly the names ending in ``LOOPBACK_SUFFIXES`` to loopback and leaves every other
lookup alone; the gateway's own code runs unchanged. Both the stdlib lookup and aiohttp's resolver are
covered (under uvloop, aiohttp's default resolver does not go through ``socket.getaddrinfo``).
"""

from __future__ import annotations

import socket
from typing import Any

from aiohttp import resolver

LOOPBACK_SUFFIXES = (".services.ai.azure.com",)


def loopback(host: Any) -> Any:
    """``127.0.0.1`` for a test host name, anything else unchanged."""
    name = host.decode() if isinstance(host, bytes) else host
    if isinstance(name, str) and name.lower().rstrip(".").endswith(LOOPBACK_SUFFIXES):
        return "127.0.0.1"
    return host


def install() -> None:
    real_getaddrinfo = socket.getaddrinfo

    def getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
        return real_getaddrinfo(loopback(host), *args, **kwargs)

    socket.getaddrinfo = getaddrinfo
    for name in ("ThreadedResolver", "AsyncResolver"):
        cls = getattr(resolver, name, None)
        if cls is None:
            continue
        real_resolve = cls.resolve

        async def resolve(self: Any, host: str, *args: Any, _real: Any = real_resolve, **kwargs: Any) -> Any:
            return await _real(self, loopback(host), *args, **kwargs)

        cls.resolve = resolve


def main() -> None:
    install()
    from llmgate.cli.main import main as llmgate_main

    llmgate_main()


if __name__ == "__main__":
    main()
