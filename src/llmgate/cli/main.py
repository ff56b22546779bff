"""The ``llmgate`` command: one module per subcommand."""

from __future__ import annotations

import click

from llmgate.cli.keys import keys
from llmgate.cli.serve import serve
from llmgate.cli.usage import usage


@click.group()
@click.version_option(package_name="llmgate")
def main() -> None:
    """llmgate: one OpenAI-compatible API in front of many LLM providers."""


main.add_command(serve)
main.add_command(keys)
main.add_command(usage)

if __name__ == "__main__":
    main()
