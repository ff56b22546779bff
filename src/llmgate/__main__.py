"""``python -m llmgate`` runs the CLI."""

from llmgate.cli.main import main

main()
