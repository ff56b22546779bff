"""The ``llmgate`` command: one module per subcommand, imported only when it runs (``llmgate serve``
does not load the chat REPL's terminal libraries, which would stay resident in the server)."""

from __future__ import annotations

import importlib

import click

COMMANDS = {
    "serve": "llmgate.cli.serve",
    "keys": "llmgate.cli.keys",
    "usage": "llmgate.cli.usage",
    "check": "llmgate.cli.check",
    "models": "llmgate.cli.models",
    "chat": "llmgate.cli.chat",
    "batch": "llmgate.cli.batch",
}


class LazyGroup(click.Group):
    """A group whose commands are imported when asked for (click's documented lazy-loading pattern)."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        module = COMMANDS.get(cmd_name)
        if module is None:
            return None
        command = getattr(importlib.import_module(module), cmd_name)
        assert isinstance(command, click.Command)
        return command


@click.group(cls=LazyGroup)
@click.version_option(package_name="llmgate")
def main() -> None:
    """llmgate: one OpenAI-compatible API in front of many LLM providers."""


if __name__ == "__main__":
    main()
