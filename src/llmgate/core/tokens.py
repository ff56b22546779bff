"""An honest token estimate for when no tokenizer is at hand (the provider's reported usage always wins)."""

from __future__ import annotations

from llmgate.core.request import ChatRequest, Message

# About 4 characters per token for English text with OpenAI/Anthropic tokenizers, plus the
# per-message framing OpenAI documents (~4 tokens per message, 3 to prime the reply).
CHARS_PER_TOKEN = 4
TOKENS_PER_MESSAGE = 4
REPLY_PRIMING_TOKENS = 3


def estimate_text_tokens(text: str) -> int:
    """Tokens in a piece of text, rounded up; empty text has none. Beyond ASCII, UTF-8 bytes are counted
    instead of characters (a CJK character is about a token, where 4 characters would make a quarter)."""
    if text.isascii():
        return -(-len(text) // CHARS_PER_TOKEN)
    return -(-len(text.encode("utf-8", "surrogatepass")) // CHARS_PER_TOKEN)


def estimate_message_tokens(messages: list[Message]) -> int:
    """Prompt tokens for a conversation, including message framing."""
    total = REPLY_PRIMING_TOKENS
    for message in messages:
        total += TOKENS_PER_MESSAGE + estimate_text_tokens(message.text())
        for call in message.tool_calls or ():
            total += estimate_text_tokens(call.function.name) + estimate_text_tokens(call.function.arguments)
    return total


def estimate_prompt_tokens(request: ChatRequest) -> int:
    """Prompt tokens for a request, tools' schemas included."""
    total = estimate_message_tokens(request.messages)
    for tool in request.tools or ():
        total += estimate_text_tokens(tool.function.name) + estimate_text_tokens(
            str(tool.function.parameters or "")
        )
    return total
