"""OpenAI messages -> Anthropic ``system`` + strictly alternating user/assistant turns.

Anthropic takes the system prompt as a top-level field and requires turns to alternate, with tool results
sent as ``tool_result`` blocks in a user turn
(https://docs.anthropic.com/en/api/messages#body-messages,
https://docs.anthropic.com/en/docs/agents-and-tools/tool-use/implement-tool-use#handling-tool-use-and-tool-result-content-blocks).
So system and developer messages are hoisted (in order), tool messages become tool results, and
consecutive turns of the same role are merged into one.
"""

from __future__ import annotations

import re

import msgspec

from llmgate.core.errors import InvalidRequest
from llmgate.core.request import ContentPart, FilePart, ImagePart, Message, TextPart, ToolCall
from llmgate.wire.anthropic import (
    Base64Source,
    Block,
    Content,
    DocumentBlock,
    ImageBlock,
    JSONObject,
    TextBlock,
    ToolResultBlock,
    ToolUseBlock,
    Turn,
    URLSource,
)

_DATA_URL = re.compile(r"data:(?P<media_type>[\w.+-]+/[\w.+-]+);base64,(?P<data>.*)", re.DOTALL)
_SYSTEM_ROLES = frozenset({"system", "developer"})
_json_object = msgspec.json.Decoder(JSONObject)

System = str | list[TextBlock] | None


def conversation(messages: list[Message]) -> tuple[System, list[Turn]]:
    """The hoisted system prompt and the alternating turns for a canonical conversation."""
    system_messages = [m for m in messages if m.role in _SYSTEM_ROLES]
    turns: list[Turn] = []
    for position, message in enumerate(messages):
        if message.role in _SYSTEM_ROLES:
            continue
        turn = _turn(message, position)
        if turns and turns[-1].role == turn.role:
            turns[-1] = Turn(turn.role, _as_blocks(turns[-1].content) + _as_blocks(turn.content))
        else:
            turns.append(turn)
    return _system(system_messages), turns


def _system(messages: list[Message]) -> System:
    # One plain-string system message stays a string; anything else becomes text blocks, one per part.
    if not messages:
        return None
    if len(messages) == 1 and isinstance(messages[0].content, str):
        return messages[0].content
    blocks: list[TextBlock] = []
    for message in messages:
        if isinstance(message.content, str):
            blocks.append(TextBlock(message.content))
            continue
        for part in message.content or ():
            if not isinstance(part, TextPart):
                raise InvalidRequest(
                    "Anthropic's system prompt takes text only.", param="messages", code="unsupported_content"
                )
            blocks.append(TextBlock(part.text))
    return blocks


def _turn(message: Message, position: int) -> Turn:
    if message.role == "user":
        return Turn("user", _content(message.content, position))
    if message.role == "assistant":
        return Turn("assistant", _assistant_content(message, position))
    if message.role == "tool":
        if not message.tool_call_id:
            raise InvalidRequest(
                "A tool message needs the tool_call_id it answers.",
                param=f"messages[{position}].tool_call_id",
                code="missing_required",
            )
        result = ToolResultBlock(message.tool_call_id, _tool_result_content(message.content, position))
        return Turn("user", [result])
    raise InvalidRequest(
        f"Anthropic has no equivalent of '{message.role}' messages (use tools and tool messages).",
        param=f"messages[{position}].role",
        code="unsupported_parameter",
    )


def _content(content: str | list[ContentPart] | None, position: int) -> Content:
    if content is None:
        return []
    if isinstance(content, str):
        return content
    return [_block(part, position) for part in content]


def _assistant_content(message: Message, position: int) -> Content:
    content = _content(message.content, position)
    if not message.tool_calls:
        return content
    # Anthropic rejects empty text blocks; an assistant turn that only called tools has none.
    blocks = [block for block in _as_blocks(content) if not (isinstance(block, TextBlock) and not block.text)]
    for index, call in enumerate(message.tool_calls):
        blocks.append(_tool_use(call, f"messages[{position}].tool_calls[{index}]"))
    return blocks


def _tool_use(call: ToolCall, where: str) -> ToolUseBlock:
    arguments = call.function.arguments.strip() or "{}"
    try:
        parsed = _json_object.decode(arguments)
    except msgspec.DecodeError as exc:
        raise InvalidRequest(
            f"Tool call arguments must be a JSON object for Anthropic: {exc}",
            param=f"{where}.function.arguments",
            code="invalid_value",
        ) from exc
    return ToolUseBlock(id=call.id, name=call.function.name, input=parsed)


def _tool_result_content(
    content: str | list[ContentPart] | None, position: int
) -> str | list[TextBlock | ImageBlock]:
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    blocks: list[TextBlock | ImageBlock] = []
    for part in content:
        block = _block(part, position)
        if not isinstance(block, TextBlock | ImageBlock):
            raise InvalidRequest(
                "Anthropic tool results take text and images only.",
                param=f"messages[{position}].content",
                code="unsupported_content",
            )
        blocks.append(block)
    return blocks


def _block(part: ContentPart, position: int) -> Block:
    if isinstance(part, TextPart):
        return TextBlock(part.text)
    if isinstance(part, ImagePart):
        return ImageBlock(_image_source(part.image_url.url, position))
    if isinstance(part, FilePart):
        return _document(part, position)
    raise InvalidRequest(
        "Anthropic does not take audio input.",
        param=f"messages[{position}].content",
        code="unsupported_content",
    )


def _image_source(url: str, position: int) -> Base64Source | URLSource:
    # https://docs.anthropic.com/en/docs/build-with-claude/vision: base64 or URL image sources.
    if url.startswith(("http://", "https://")):
        return URLSource(url)
    inline = _DATA_URL.fullmatch(url)
    if inline is None:
        raise InvalidRequest(
            "An image must be an http(s) URL or a base64 data: URL.",
            param=f"messages[{position}].content",
            code="invalid_value",
        )
    return Base64Source(inline["media_type"], inline["data"])


def _document(part: FilePart, position: int) -> DocumentBlock:
    # https://docs.anthropic.com/en/docs/build-with-claude/pdf-support: PDFs as base64 document blocks.
    # OpenAI file ids name files stored at OpenAI, which Anthropic cannot read.
    inline = _DATA_URL.fullmatch(part.file.get("file_data", ""))
    if inline is None or not is_pdf_data(part.file):
        raise InvalidRequest(
            "Anthropic takes files only as base64 PDF data: URLs (file_data), not file ids.",
            param=f"messages[{position}].content",
            code="unsupported_content",
        )
    return DocumentBlock(Base64Source("application/pdf", inline["data"]), title=part.file.get("filename"))


def is_pdf_data(file: dict[str, str]) -> bool:
    """Whether a file part is one Anthropic can read (a base64 PDF data: URL)."""
    inline = _DATA_URL.fullmatch(file.get("file_data", ""))
    return inline is not None and inline["media_type"] == "application/pdf"


def _as_blocks(content: Content) -> list[Block]:
    if isinstance(content, str):
        return [TextBlock(content)] if content else []
    return list(content)
