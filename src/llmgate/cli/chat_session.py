"""The conversation behind ``llmgate chat``: its messages, commands and totals, and the two ways to reach a
model (the in-process gateway, or a running gateway over HTTP). No terminal code here."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import aiohttp

from llmgate.core.errors import GatewayError
from llmgate.gateway import Gateway

HELP = """commands:
  /model NAME    switch model (the conversation is kept)
  /system TEXT   set the system message (empty: none)
  /reset         forget the conversation
  /save FILE     write the conversation as JSON
  /cost          tokens and USD so far
  /help          this text
Enter sends; Esc then Enter (or Alt-Enter) starts a new line; Ctrl-C stops an answer; Ctrl-D quits."""


@dataclass
class Totals:
    """What the session has used so far."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float = 0.0
    unpriced: int = 0
    """Answers whose cost is not known (no price, or the gateway is remote)."""

    def line(self) -> str:
        """One line for ``/cost``."""
        cost = f"${self.cost_usd:.6f}" + (f" (+{self.unpriced} unpriced)" if self.unpriced else "")
        return f"prompt {self.prompt_tokens:,} · completion {self.completion_tokens:,} tokens · {cost}"


@dataclass
class Answer:
    """A finished (or stopped) answer's text and what it cost."""

    text: str = ""
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float | None = None


class Backend(Protocol):
    """Where the chat's calls go."""

    def stream(self, model: str, messages: list[dict[str, Any]], answer: Answer) -> AsyncIterator[str]:
        """The answer's text as it streams; ``answer`` is filled in as it goes."""
        ...

    async def close(self) -> None:
        """Release connections."""
        ...


class ChatError(Exception):
    """A call failed: one readable line."""


class LocalBackend:
    """The in-process gateway (``--config``)."""

    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway

    async def stream(self, model: str, messages: list[dict[str, Any]], answer: Answer) -> AsyncIterator[str]:
        try:
            stream = self.gateway.stream(model, messages, stream_options={"include_usage": True})
        except GatewayError as refused:
            raise ChatError(refused.message) from None
        try:
            async for chunk in stream:
                for choice in chunk.choices:
                    if choice.delta.content:
                        answer.text += choice.delta.content
                        yield choice.delta.content
        except GatewayError as failed:
            raise ChatError(failed.message) from None
        finally:
            await stream.aclose()
            if stream.usage is not None:
                answer.prompt_tokens = stream.usage.prompt_tokens
                answer.completion_tokens = stream.usage.completion_tokens
            answer.cost_usd = stream.cost

    async def close(self) -> None:
        await self.gateway.close()


class RemoteBackend:
    """A running gateway (``--url``, ``--key``), through its OpenAI-compatible API."""

    def __init__(self, url: str, key: str | None) -> None:
        self.url = url.rstrip("/")
        self._headers = {"Authorization": f"Bearer {key}"} if key else {}
        self._session: aiohttp.ClientSession | None = None

    async def stream(self, model: str, messages: list[dict[str, Any]], answer: Answer) -> AsyncIterator[str]:
        body = {
            "model": model,
            "messages": messages,
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        if self._session is None:  # made on the loop that uses it
            timeout = aiohttp.ClientTimeout(total=None, sock_connect=10)
            self._session = aiohttp.ClientSession(headers=self._headers, timeout=timeout)
        try:
            async with self._session.post(f"{self.url}/chat/completions", json=body) as response:
                if response.status >= 400:
                    raise ChatError(_error_line(response.status, await response.text()))
                async for raw in response.content:
                    line = raw.decode("utf-8", "replace").strip()
                    if not line.startswith("data:") or line == "data: [DONE]":
                        continue
                    event = json.loads(line[5:])
                    if "error" in event:
                        raise ChatError(str(event["error"].get("message", event["error"])))
                    usage = event.get("usage")
                    if usage:
                        answer.prompt_tokens = usage.get("prompt_tokens", 0)
                        answer.completion_tokens = usage.get("completion_tokens", 0)
                    for choice in event.get("choices") or ():
                        text = (choice.get("delta") or {}).get("content")
                        if text:
                            answer.text += text
                            yield text
        except aiohttp.ClientError as failed:
            raise ChatError(f"cannot reach {self.url}: {failed}") from None

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()


def _error_line(status: int, text: str) -> str:
    try:
        message = json.loads(text)["error"]["message"]
    except (ValueError, KeyError, TypeError):
        message = text[:300]
    return f"HTTP {status}: {message}"


@dataclass
class Session:
    """One chat: the model, the system message, the turns so far, the totals."""

    model: str
    system: str | None = None
    turns: list[dict[str, Any]] = field(default_factory=list)
    totals: Totals = field(default_factory=Totals)

    def messages(self) -> list[dict[str, Any]]:
        """What the next call sends."""
        head = [{"role": "system", "content": self.system}] if self.system else []
        return [*head, *self.turns]

    def command(self, line: str) -> str | None:
        """Run a ``/command``; its reply (``None``: not a command, send it as a message)."""
        if not line.startswith("/"):
            return None
        name, _, rest = line[1:].partition(" ")
        rest = rest.strip()
        if name == "model":
            if not rest:
                return f"model: {self.model}"
            self.model = rest
            return f"model: {rest}"
        if name == "system":
            self.system = rest or None
            return f"system: {rest}" if rest else "system message removed"
        if name == "reset":
            self.turns.clear()
            return "conversation cleared"
        if name == "save":
            if not rest:
                return "usage: /save FILE"
            return self.save(Path(rest).expanduser())
        if name == "cost":
            return self.totals.line()
        if name == "help":
            return HELP
        return f"unknown command /{name} (try /help)"

    def save(self, path: Path) -> str:
        """Write the conversation (model, messages, totals) as JSON."""
        body = {"model": self.model, "messages": self.messages(), "totals": self.totals.__dict__}
        try:
            path.write_text(json.dumps(body, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        except OSError as failed:
            return f"cannot save: {failed}"
        return f"saved {len(self.messages())} messages to {path}"

    def answered(self, answer: Answer) -> None:
        """Count an answer (a stopped one too: it was generated and billed)."""
        if answer.text:
            self.turns.append({"role": "assistant", "content": answer.text})
        self.totals.prompt_tokens += answer.prompt_tokens
        self.totals.completion_tokens += answer.completion_tokens
        if answer.cost_usd is None:
            self.totals.unpriced += 1
        else:
            self.totals.cost_usd += answer.cost_usd
