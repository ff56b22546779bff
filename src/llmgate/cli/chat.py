"""``llmgate chat [MODEL]``: an interactive, streaming chat in the terminal.

It runs on the in-process gateway (``--config``) or against a running one (``--url``, ``--key``). Tokens
appear as they stream; Ctrl-C stops the current answer (the prompt comes back), Ctrl-D quits; an error is
one line and the session goes on.
"""

from __future__ import annotations

import asyncio
import signal
import sys

import click
from prompt_toolkit import PromptSession
from prompt_toolkit.history import FileHistory, History, InMemoryHistory
from prompt_toolkit.key_binding import KeyBindings, KeyPressEvent
from rich.console import Console
from rich.markup import escape

from llmgate.cli.chat_session import Answer, Backend, ChatError, LocalBackend, RemoteBackend, Session
from llmgate.cli.common import config_option, gateway_of
from llmgate.config.settings import data_dir

DEFAULT_MODEL = "mock:mock"


@click.command()
@config_option
@click.argument("model", required=False)
@click.option("--url", default=None, help="A running gateway's base URL (e.g. http://127.0.0.1:8000/v1).")
@click.option("--key", default=None, envvar="LLMGATE_API_KEY", help="Its API key (or LLMGATE_API_KEY).")
@click.option("--system", "system", default=None, help="A system message to start with.")
@click.option("--no-history", is_flag=True, help="Keep no input history on disk.")
def chat(
    *,
    config_path: str | None,
    model: str | None,
    url: str | None,
    key: str | None,
    system: str | None,
    no_history: bool,
) -> None:
    """Chat with a model in the terminal, streaming (/help for the commands)."""
    backend: Backend
    if url is not None:
        backend, default = RemoteBackend(url, key), DEFAULT_MODEL
    else:
        gateway = gateway_of(config_path)
        groups = gateway.groups()
        backend, default = LocalBackend(gateway), (groups[0]["name"] if groups else DEFAULT_MODEL)
    session = Session(model or default, system)
    history: History = InMemoryHistory() if no_history else FileHistory(str(data_dir({}) / "chat_history"))
    asyncio.run(_run(backend, session, history))


async def _run(backend: Backend, session: Session, history: History) -> None:
    console = Console(highlight=False)
    prompt: PromptSession[str] = PromptSession(history=history, key_bindings=_keys())
    model = escape(session.model)
    console.print(f"[bold]llmgate chat[/] · model [cyan]{model}[/] · /help for commands, Ctrl-D to quit")
    try:
        while True:
            try:
                line = await prompt.prompt_async(f"{session.model}> ")
            except KeyboardInterrupt:
                continue
            except EOFError:
                break
            line = line.strip()
            if not line:
                continue
            reply = session.command(line)
            if reply is not None:
                console.print(reply, markup=False)
                continue
            await _turn(backend, session, line, console)
    finally:
        await backend.close()
    console.print(session.totals.line(), style="dim")


async def _turn(backend: Backend, session: Session, line: str, console: Console) -> None:
    """One question and its streamed answer; Ctrl-C stops the answer, an error is one line."""
    session.turns.append({"role": "user", "content": line})
    answer = Answer()
    task = asyncio.create_task(_show(backend, session, answer))
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGINT, task.cancel)
    try:
        await asyncio.wait([task])
    finally:
        loop.remove_signal_handler(signal.SIGINT)
    error = None if task.cancelled() else task.exception()
    if task.cancelled():
        console.print("\n[stopped]", style="yellow", markup=False)
    elif isinstance(error, ChatError):
        sys.stdout.write("\n" if answer.text else "")
        console.print(f"error: {error}", style="red", markup=False)
        if not answer.text:
            session.turns.pop()  # nothing was said: the question can be asked again as it was
            return
    elif error is not None:
        raise error
    session.answered(answer)


async def _show(backend: Backend, session: Session, answer: Answer) -> None:
    async for text in backend.stream(session.model, session.messages(), answer):
        sys.stdout.write(text)
        sys.stdout.flush()
    sys.stdout.write("\n")
    sys.stdout.flush()


def _keys() -> KeyBindings:
    bindings = KeyBindings()

    @bindings.add("escape", "enter")
    def _newline(event: KeyPressEvent) -> None:
        event.current_buffer.insert_text("\n")

    return bindings
