"""The ``llmgate`` command: one module per subcommand."""

from __future__ import annotations

import click

from llmgate.cli.chat import chat
from llmgate.cli.check import check
from llmgate.cli.keys import keys
from llmgate.cli.models import models
from llmgate.cli.serve import serve
from llmgate.cli.usage import usage


@click.group()
@click.version_option(package_name="llmgate")
def main() -> None:
    """llmgate: one OpenAI-compatible API in front of many LLM providers."""


main.add_command(serve)
main.add_command(keys)
main.add_command(usage)
main.add_command(check)
main.add_command(models)
main.add_command(chat)

if __name__ == "__main__":
    main()
