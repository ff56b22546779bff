"""Token counting: exact with OpenAI's encodings for OpenAI-family models, an honest labelled estimate
for the rest. The provider's reported usage always wins over either (the accounting uses it).

Exact counts follow OpenAI's documented framing for chat models: 3 tokens per message, 1 more for a
``name``, 3 to prime the reply. Tool schemas are counted as their JSON text, which is close to, not
exactly, what OpenAI bills for them; images and audio are not counted.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import msgspec

from llmgate.core.request import ChatRequest, Message
from llmgate.core.tokens import estimate_message_tokens, estimate_prompt_tokens, estimate_text_tokens
from llmgate.toolkit.encodings import load

if TYPE_CHECKING:
    import tiktoken

CHUNK = 50_000
"""Text is encoded in pieces of at most this many characters, cut where a word starts: tiktoken's own
splitter panics on runs of a million spaces, and no token spans a cut before a word (a cut inside a
longer run of whitespace can move the count by one)."""
TOKENS_PER_MESSAGE = 3
TOKENS_PER_NAME = 1
REPLY_PRIMING = 3

# Model-name prefixes of each encoding, after any provider prefix (``openai:``, ``azure/``); see
# https://github.com/openai/tiktoken/blob/main/tiktoken/model.py for OpenAI's own table.
_O200K = ("gpt-4o", "gpt-4.1", "gpt-4.5", "gpt-5", "o1", "o3", "o4", "chatgpt-4o", "gpt-oss", "codex-")
_CL100K = ("gpt-4", "gpt-3.5", "gpt-35", "text-embedding-3", "text-embedding-ada-002")


@dataclass(frozen=True, slots=True)
class TokenCount:
    """A count of tokens, and how it was made."""

    tokens: int
    exact: bool
    method: str
    """``tiktoken:o200k_base`` (or another encoding) when exact, ``estimate`` otherwise."""

    def as_dict(self) -> dict[str, object]:
        """The count as JSON-ready fields."""
        return {"tokens": self.tokens, "exact": self.exact, "method": self.method}


def encoding_name(model: str) -> str | None:
    """The OpenAI encoding of a model, or ``None`` when it is not an OpenAI-family model."""
    name = model.rsplit("/", 1)[-1].rsplit(":", 1)[-1].lower()
    if name.startswith(_O200K):
        return "o200k_base"
    if name.startswith(_CL100K):
        return "cl100k_base"
    return None


class TokenCounter:
    """Counts tokens for a model. Encodings load on first use (about a second and 80-110 MiB for
    ``o200k_base``), once per counter, safely from several threads."""

    def __init__(self, *, loader: Callable[[str], tiktoken.Encoding] = load) -> None:
        self._loader = loader
        self._encodings: dict[str, tiktoken.Encoding] = {}
        self._loading = threading.Lock()

    def encoding(self, model: str) -> tiktoken.Encoding | None:
        """The model's encoding (loaded now if need be), or ``None`` for a non-OpenAI model."""
        name = encoding_name(model)
        if name is None:
            return None
        found = self._encodings.get(name)
        if found is None:
            with self._loading:
                found = self._encodings.get(name)
                if found is None:
                    found = self._encodings[name] = self._loader(name)
        return found

    def text(self, model: str, text: str) -> TokenCount:
        """Tokens in a piece of text (no message framing)."""
        encoding = self.encoding(model)
        if encoding is None:
            return TokenCount(estimate_text_tokens(text), False, "estimate")
        return TokenCount(encoded_length(encoding, text), True, f"tiktoken:{encoding.name}")

    def messages(self, model: str, messages: Sequence[Message]) -> TokenCount:
        """Prompt tokens of a conversation, message framing included."""
        encoding = self.encoding(model)
        if encoding is None:
            return TokenCount(estimate_message_tokens(list(messages)), False, "estimate")
        return TokenCount(_framed(encoding, messages), True, f"tiktoken:{encoding.name}")

    def request(self, model: str, request: ChatRequest) -> TokenCount:
        """Prompt tokens of a request, its tools' schemas included."""
        encoding = self.encoding(model)
        if encoding is None:
            return TokenCount(estimate_prompt_tokens(request), False, "estimate")
        total = _framed(encoding, request.messages)
        for tool in request.tools or ():
            schema = msgspec.json.encode(tool.function.parameters or {}).decode()
            total += encoded_length(encoding, f"{tool.function.name} {tool.function.description or ''}")
            total += encoded_length(encoding, schema)
        return TokenCount(total, True, f"tiktoken:{encoding.name}")


def _framed(encoding: tiktoken.Encoding, messages: Sequence[Message]) -> int:
    total = REPLY_PRIMING
    for message in messages:
        total += message_tokens(encoding, message)
    return total


def message_tokens(encoding: tiktoken.Encoding, message: Message) -> int:
    """One message's tokens with its framing (a conversation adds ``REPLY_PRIMING`` once)."""
    total = (
        TOKENS_PER_MESSAGE + encoded_length(encoding, message.role) + encoded_length(encoding, message.text())
    )
    if message.name:
        total += TOKENS_PER_NAME + encoded_length(encoding, message.name)
    for call in message.tool_calls or ():
        total += encoded_length(encoding, call.function.name) + encoded_length(
            encoding, call.function.arguments
        )
    return total


def encoded_length(encoding: tiktoken.Encoding, text: str) -> int:
    """Tokens of ``text``, encoded ``CHUNK`` characters at a time (cut where a word starts)."""
    if len(text) <= CHUNK:
        return len(encoding.encode_ordinary(text))
    total, start = 0, 0
    while start < len(text):
        end = min(start + CHUNK, len(text))
        if end < len(text):
            cut = _word_start(text, start + CHUNK // 2, end)
            end = cut if cut is not None else end
        total += len(encoding.encode_ordinary(text[start:end]))
        start = end
    return total


def _word_start(text: str, low: int, high: int) -> int | None:
    """The last index in ``(low, high]`` where whitespace is followed by a non-space (a word's space)."""
    for index in range(high, low, -1):
        if not text[index].isspace() and text[index - 1] == " ":
            return index - 1  # the word's leading space goes with it, as the splitter would have it
    return None
