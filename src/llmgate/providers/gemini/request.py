"""OpenAI chat request -> Gemini ``generateContent`` body (https://ai.google.dev/api/generate-content).

System and developer messages become ``systemInstruction`` (hoisted: Gemini has one, so their position
in the conversation is lost); user and tool turns are ``user`` contents, assistant turns ``model`` contents,
and consecutive turns of one role are merged, so parallel tool results reach Gemini as one turn of
``functionResponse`` parts, as it expects.
"""

from __future__ import annotations

import mimetypes
import re
from typing import Any

import msgspec

from llmgate.core.errors import InvalidRequest
from llmgate.core.headroom import ParamReport
from llmgate.core.request import (
    AudioPart,
    ChatRequest,
    ContentPart,
    FilePart,
    FunctionCall,
    FunctionDefinition,
    ImagePart,
    Message,
    NamedFunction,
    ToolCall,
    ToolChoiceFunction,
)
from llmgate.providers.gemini.schema import JSONObject, to_gemini_schema

# Gemini 3 rejects a replayed functionCall without the thoughtSignature it came with; where the caller's
# history has none (a Gemini answer relayed as OpenAI JSON, or another model's call), this documented
# sentinel skips the check: https://ai.google.dev/gemini-api/docs/thought-signatures#faqs
SKIP_SIGNATURE = "skip_thought_signature_validator"

# Gemini-native request fields a caller may send as extra top-level fields; passed through as given.
NATIVE_FIELDS = {
    "safetySettings": "safetySettings",
    "safety_settings": "safetySettings",
    "cachedContent": "cachedContent",
    "cached_content": "cachedContent",
}
NATIVE_GENERATION_FIELDS = {"top_k": "topK", "topK": "topK"}
GENERATION_CONFIG_FIELDS = ("generationConfig", "generation_config")
# Extra fields that would change the answer and that Gemini's text API cannot honour.
REFUSED_EXTRAS = frozenset({"audio", "web_search_options"})

# thinkingBudget (Gemini 2.x, https://ai.google.dev/gemini-api/docs/thinking#set-budget) and thinkingLevel
# (Gemini 3, https://ai.google.dev/gemini-api/docs/gemini-3#thinking_level) per reasoning_effort.
THINKING_BUDGETS = {"none": 0, "minimal": 512, "low": 1024, "medium": 8192, "high": 24576, "xhigh": 32768}
THINKING_LEVELS = {
    "none": "minimal",
    "minimal": "minimal",
    "low": "low",
    "medium": "medium",
    "high": "high",
    "xhigh": "high",
}
_PRO_MINIMUM_BUDGET = 128  # 2.5 Pro cannot switch thinking off
_MAJOR_VERSION = re.compile(r"gemini-(\d+)")
_DATA_URL = re.compile(r"data:(?P<mime>[\w.+-]+/[\w.+-]+)?(?P<params>(?:;[^;,]*)*),(?P<data>.*)", re.DOTALL)
_json = msgspec.json.Decoder()


def check_request(request: ChatRequest) -> ParamReport:
    """Parameters Gemini drops without changing the answer, and those it cannot honour."""
    dropped = [
        name
        for name, present in (
            ("logit_bias", bool(request.logit_bias)),
            ("user", request.user is not None),
            ("metadata", bool(request.metadata)),
            ("parallel_tool_calls", request.parallel_tool_calls is False),
            # Gemini has logprobs only on some models and in another shape: the answer is the same without.
            ("logprobs", bool(request.logprobs)),
            ("top_logprobs", request.top_logprobs is not None),
            ("strict", _asks_strict(request)),
            ("detail", _image_detail(request)),
        )
        if present
    ]
    refused: list[str] = []
    for name, value in request.extra.items():
        if name == "modalities" and value in (["text"], None):
            continue  # text only is what Gemini answers anyway: honoured, not dropped
        if name in REFUSED_EXTRAS or name == "modalities":
            refused.append(name)
        elif not _native(name):
            dropped.append(name)
    if request.reasoning_effort is not None and request.reasoning_effort not in THINKING_BUDGETS:
        refused.append("reasoning_effort")
    if any(_foreign_file_id(part) for message in request.messages for part in _parts(message)):
        refused.append("file_id")
    return ParamReport(dropped=tuple(dropped), refused=tuple(refused))


def chat_body(request: ChatRequest, model: str) -> JSONObject:
    """The ``generateContent`` body for a request, for the given upstream model."""
    contents, system = _contents(request)
    body: JSONObject = {"contents": contents}
    if system:
        body["systemInstruction"] = {"parts": system}
    declarations = [*(tool.function for tool in request.tools or ()), *(request.functions or ())]
    if declarations:
        body["tools"] = [{"functionDeclarations": [_declaration(d) for d in declarations]}]
    tool_config = _tool_config(request)
    if tool_config is not None:
        body["toolConfig"] = {"functionCallingConfig": tool_config}
    config = generation_config(request, model)
    if config:
        body["generationConfig"] = config
    for name, value in request.extra.items():
        if name in NATIVE_FIELDS:
            body[NATIVE_FIELDS[name]] = value
    return body


def _native(name: str) -> bool:
    return name in NATIVE_FIELDS or name in NATIVE_GENERATION_FIELDS or name in GENERATION_CONFIG_FIELDS


def _asks_strict(request: ChatRequest) -> bool:
    schema_strict = bool(
        request.response_format
        and request.response_format.json_schema
        and request.response_format.json_schema.strict
    )
    return schema_strict or any(tool.function.strict for tool in request.tools or ())


def _parts(message: Message) -> list[ContentPart]:
    return message.content if isinstance(message.content, list) else []


def _image_detail(request: ChatRequest) -> bool:
    return any(
        isinstance(part, ImagePart) and part.image_url.detail not in (None, "auto")
        for message in request.messages
        for part in _parts(message)
    )


def _foreign_file_id(part: ContentPart) -> bool:
    if not isinstance(part, FilePart):
        return False
    file_id = part.file.get("file_id")
    return file_id is not None and "file_data" not in part.file and not _is_uri(file_id)


def _is_uri(value: str) -> bool:
    return value.startswith(("https://", "http://", "gs://"))


# --- messages -> contents --------------------------------------------------------------------------------


def _contents(request: ChatRequest) -> tuple[list[JSONObject], list[JSONObject]]:
    names = {call.id: call.function.name for m in request.messages for call in m.tool_calls or ()}
    raw = request.raw_messages
    contents: list[JSONObject] = []
    system: list[JSONObject] = []
    for index, message in enumerate(request.messages):
        if message.role in ("system", "developer"):
            system.append({"text": message.text()})
            continue
        raw_message = raw[index] if raw is not None and index < len(raw) else None
        role, parts = _turn(message, index, names, raw_message)
        if not parts:
            continue  # Gemini rejects a content without parts (e.g. an empty assistant turn)
        if contents and contents[-1]["role"] == role:
            contents[-1]["parts"].extend(parts)
        else:
            contents.append({"role": role, "parts": parts})
    return contents, system


def _turn(message: Message, index: int, names: dict[str, str], raw: Any) -> tuple[str, list[JSONObject]]:
    if message.role == "assistant":
        parts = [{"text": message.content}] if isinstance(message.content, str) and message.content else []
        if isinstance(message.content, list):
            parts = [_content_part(part, f"messages[{index}].content") for part in message.content]
        calls = list(message.tool_calls or ())
        if message.function_call is not None:  # the legacy ``functions`` API
            calls.append(ToolCall(id="", function=message.function_call))
        parts += [
            _function_call(call, _signature(raw, position) or (SKIP_SIGNATURE if position == 0 else None))
            for position, call in enumerate(calls)
        ]
        return "model", parts
    if message.role in ("tool", "function"):
        return "user", [_function_response(message, index, names)]
    content = message.content
    if isinstance(content, str):
        return "user", [{"text": content}]
    return "user", [_content_part(part, f"messages[{index}].content") for part in content or ()]


def _signature(raw: Any, position: int) -> str | None:
    """The thought signature a caller kept on a tool call, as Google's OpenAI-compatible endpoint hands
    it out (``tool_calls[i].extra_content.google.thought_signature``,
    https://ai.google.dev/gemini-api/docs/thought-signatures#openai)."""
    calls = raw.get("tool_calls") if isinstance(raw, dict) else None
    if not isinstance(calls, list) or position >= len(calls) or not isinstance(calls[position], dict):
        return None
    extra = calls[position].get("extra_content")
    google = extra.get("google") if isinstance(extra, dict) else None
    signature = google.get("thought_signature") if isinstance(google, dict) else None
    return signature if isinstance(signature, str) and signature else None


def _function_call(call: ToolCall, signature: str | None) -> JSONObject:
    function: JSONObject = {"name": call.function.name, "args": _arguments(call.function)}
    if call.id:
        function["id"] = call.id
    part: JSONObject = {"functionCall": function}
    if signature:
        part["thoughtSignature"] = signature
    return part


def _arguments(function: FunctionCall) -> JSONObject:
    if not function.arguments.strip():
        return {}
    try:
        arguments = _json.decode(function.arguments)
    except msgspec.DecodeError:
        arguments = None
    if not isinstance(arguments, dict):
        raise InvalidRequest(
            f"The arguments of the call to '{function.name}' must be a JSON object to send to Gemini.",
            param="messages",
        )
    return arguments


def _function_response(message: Message, index: int, names: dict[str, str]) -> JSONObject:
    call_id = message.tool_call_id
    name = names.get(call_id or "") or message.name
    if not name:
        raise InvalidRequest(
            f"Tool message {index} answers tool call {call_id!r}, which no earlier assistant message made; "
            "Gemini needs the function's name.",
            param=f"messages[{index}].tool_call_id",
        )
    response: JSONObject = {"name": name, "response": _response_object(message.text())}
    if call_id:
        response["id"] = call_id
    return {"functionResponse": response}


def _response_object(text: str) -> JSONObject:
    """Gemini wants the result as a JSON object: a JSON-object result is sent as is (all of it is the
    output); anything else is wrapped as ``{"output": text}``, the key Gemini documents for results
    (https://ai.google.dev/api/caching#FunctionResponse)."""
    if text.lstrip().startswith("{"):
        try:
            decoded = _json.decode(text)
        except msgspec.DecodeError:
            decoded = None
        if isinstance(decoded, dict):
            return decoded
    return {"output": text}


def _content_part(part: ContentPart, param: str) -> JSONObject:
    if isinstance(part, ImagePart):
        return _media(part.image_url.url, param, default_mime="image/jpeg")
    if isinstance(part, AudioPart):
        return {"inlineData": {"mimeType": f"audio/{part.input_audio.format}", "data": part.input_audio.data}}
    if isinstance(part, FilePart):
        source = part.file.get("file_data") or part.file.get("file_id") or ""
        mime = mimetypes.guess_type(part.file.get("filename", ""))[0] or "application/pdf"
        if not source.startswith("data:") and not _is_uri(source):
            raise InvalidRequest("Gemini cannot read OpenAI file ids; send file_data instead.", param=param)
        return _media(source, param, default_mime=mime)
    return {"text": part.text}


def _media(url: str, param: str, *, default_mime: str) -> JSONObject:
    """``data:`` URLs travel inline (base64); other URLs as ``fileData``, which Gemini fetches itself.
    Gemini reads Files-API URIs, YouTube and (newer models) public HTTP URLs; the MIME type of a URL is
    guessed from its extension (https://ai.google.dev/gemini-api/docs/file-input-methods)."""
    if url.startswith("data:"):
        match = _DATA_URL.fullmatch(url)
        if match is None or ";base64" not in match["params"]:
            raise InvalidRequest("Only base64 data: URLs can be sent to Gemini.", param=param)
        return {"inlineData": {"mimeType": match["mime"] or default_mime, "data": match["data"]}}
    mime = mimetypes.guess_type(url.split("?", 1)[0])[0] or default_mime
    return {"fileData": {"mimeType": mime, "fileUri": url}}


# --- tools and generation settings -----------------------------------------------------------------------


def _declaration(function: FunctionDefinition) -> JSONObject:
    declaration: JSONObject = {"name": function.name}
    if function.description:
        declaration["description"] = function.description
    if function.parameters is not None:
        declaration["parameters"] = to_gemini_schema(function.parameters, param="tools")
    return declaration


def _tool_config(request: ChatRequest) -> JSONObject | None:
    choice = request.tool_choice if request.tool_choice is not None else request.function_call
    if choice is None:
        return None
    if isinstance(choice, ToolChoiceFunction | NamedFunction):
        name = choice.function.name if isinstance(choice, ToolChoiceFunction) else choice.name
        return {"mode": "ANY", "allowedFunctionNames": [name]}
    return {"mode": {"none": "NONE", "auto": "AUTO", "required": "ANY"}[choice]}


def generation_config(request: ChatRequest, model: str) -> JSONObject:
    """``generationConfig``: sampling, limits, output format and thinking, then the caller's native keys."""
    stop = [request.stop] if isinstance(request.stop, str) else request.stop
    config: JSONObject = {
        key: value
        for key, value in (
            ("temperature", request.temperature),
            ("topP", request.top_p),
            ("candidateCount", request.n),
            ("maxOutputTokens", request.output_limit),
            ("stopSequences", stop),
            ("seed", request.seed),
            ("presencePenalty", request.presence_penalty),
            ("frequencyPenalty", request.frequency_penalty),
        )
        if value is not None
    }
    config.update(_response_format(request))
    thinking = thinking_config(request.reasoning_effort, model)
    if thinking is not None:
        config["thinkingConfig"] = thinking
    for name, value in request.extra.items():
        if name in NATIVE_GENERATION_FIELDS:
            config[NATIVE_GENERATION_FIELDS[name]] = value
        elif name in GENERATION_CONFIG_FIELDS and isinstance(value, dict):
            thinking_extra = value.get("thinkingConfig")
            config.update(value)
            if isinstance(thinking_extra, dict) and thinking is not None:
                config["thinkingConfig"] = {**thinking, **thinking_extra}
    return config


def _response_format(request: ChatRequest) -> JSONObject:
    response_format = request.response_format
    if response_format is None or response_format.type == "text":
        return {}
    out: JSONObject = {"responseMimeType": "application/json"}
    schema = response_format.json_schema.schema if response_format.json_schema is not None else None
    if response_format.type == "json_schema" and schema is not None:
        out["responseSchema"] = to_gemini_schema(schema, param="response_format")
    return out


def thinking_config(effort: str | None, model: str) -> JSONObject | None:
    """``thinkingConfig`` for an OpenAI ``reasoning_effort``: a thinking level on Gemini 3 and later, a
    token budget before (unknown model names such as ``gemini-flash-latest`` get a budget, which Gemini 3
    still accepts)."""
    if effort is None or effort not in THINKING_BUDGETS:
        return None
    version = _MAJOR_VERSION.search(model)
    if version is not None and int(version.group(1)) >= 3:
        return {"thinkingLevel": THINKING_LEVELS[effort]}
    budget = THINKING_BUDGETS[effort]
    if "pro" in model:
        budget = max(budget, _PRO_MINIMUM_BUDGET)
    return {"thinkingBudget": budget}
