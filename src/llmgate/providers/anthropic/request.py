"""A canonical (OpenAI) chat request -> a Messages API body, and the report of what it cannot carry.

The same ``plan`` decides both what ``check`` reports and what ``messages_body`` sends, so the
``x-llmgate-dropped-params`` header never disagrees with the request that went out.

Choices worth knowing (each also in the README section):

- ``reasoning_effort`` becomes an extended-thinking budget (``_THINKING_BUDGETS``), at most half of
  ``max_tokens`` so the answer keeps room, never below Anthropic's minimum of 1024
  (https://docs.anthropic.com/en/docs/build-with-claude/extended-thinking). Thinking cannot be combined
  with forced tool use or with changed sampling: then the conflicting parameter is dropped and reported.
- ``response_format`` ``json_schema`` / ``json_object``: by default a forced tool ``llmgate_json_response``
  whose ``input_schema`` is the schema; its input comes back as the message text
  (https://docs.anthropic.com/en/docs/agents-and-tools/tool-use/overview#json-mode). With
  ``structured_outputs`` (models that have it) ``json_schema`` goes to ``output_config.format`` instead
  (https://docs.anthropic.com/en/docs/build-with-claude/structured-outputs).
- ``top_k`` (an extra field) is Anthropic's own and is sent, except with thinking.
- Other unknown top-level fields are dropped and reported: they are OpenAI (or other vendors') parameters this
  adapter does not know how to express, and passing them on would make Anthropic answer 400.
"""

from __future__ import annotations

from dataclasses import dataclass

from llmgate.core.errors import InvalidRequest
from llmgate.core.headroom import ParamReport
from llmgate.core.request import AudioPart, ChatRequest, FilePart, ImagePart, Tool, ToolChoiceFunction
from llmgate.providers.anthropic.messages import conversation, is_pdf_data
from llmgate.wire.anthropic import (
    JSON_TOOL,
    MIN_THINKING_BUDGET,
    JSONObject,
    MessagesBody,
    Metadata,
    OutputConfig,
    OutputFormat,
    Thinking,
    ToolChoiceSpec,
    ToolSpec,
)

_THINKING_BUDGETS = {"minimal": 1024, "low": 2048, "medium": 8192, "high": 16384, "xhigh": 32768}
# With thinking on, top_p may only be 0.95..1 (and temperature only its default of 1, see below).
_THINKING_MIN_TOP_P = 0.95

# Parameters Anthropic has no equivalent for whose absence does not change what the answer means,
# with the value that is the same as not sending them.
_DROPPABLE: tuple[tuple[str, object], ...] = (
    ("presence_penalty", 0),
    ("frequency_penalty", 0),
    ("logit_bias", None),
    ("seed", None),
    ("logprobs", False),
    ("top_logprobs", 0),
    ("metadata", None),
)


@dataclass(frozen=True, slots=True)
class Plan:
    """What will be sent for a request: the decisions that depend on more than one parameter."""

    thinking_budget: int | None
    json_schema: JSONObject | None
    json_via_tool: bool
    keep_temperature: bool
    keep_top_p: bool
    report: ParamReport


def plan(request: ChatRequest, *, max_tokens: int | None, structured_outputs: bool) -> Plan:
    """Decide thinking, JSON output and sampling for a request; ``max_tokens`` None = not known yet."""
    dropped: list[str] = [name for name, neutral in _DROPPABLE if _is_set(request, name, neutral)]
    refused: list[str] = _refused(request)
    schema = _json_schema(request)
    native = structured_outputs and _wants_json_schema(request)
    json_via_tool = schema is not None and not native
    if json_via_tool and _forced_tool(request):
        json_via_tool, schema = False, None  # the answer is a forced tool call; no text to format
    budget = _thinking_budget(request, max_tokens)
    if request.reasoning_effort is not None and request.reasoning_effort != "none" and budget is None:
        dropped.append("reasoning_effort")
    if budget is not None and (json_via_tool or _forced_tool(request)):
        # https://docs.anthropic.com/en/docs/build-with-claude/extended-thinking#extended-thinking-with-tool-use
        budget = None
        dropped.append("reasoning_effort")
    keep_temperature = _temperature_fits(request.temperature, thinking=budget is not None)
    keep_top_p = budget is None or request.top_p is None or request.top_p >= _THINKING_MIN_TOP_P
    if not keep_temperature:
        dropped.append("temperature")
    if not keep_top_p:
        dropped.append("top_p")
    if request.tools and not structured_outputs and any(t.function.strict for t in request.tools):
        dropped.append("tools.function.strict")
    keep_top_k = _top_k(request) is not None and budget is None
    dropped += sorted(
        name for name in request.extra if name not in refused and not (name == "top_k" and keep_top_k)
    )
    report = ParamReport(dropped=tuple(dropped), refused=tuple(refused))
    return Plan(budget, schema, json_via_tool, keep_temperature, keep_top_p, report)


def messages_body(
    request: ChatRequest, model: str, *, max_tokens: int, structured_outputs: bool, stream: bool
) -> MessagesBody:
    """The Messages API body for a request; raises ``InvalidRequest`` for what cannot be sent."""
    decided = plan(request, max_tokens=max_tokens, structured_outputs=structured_outputs)
    if decided.report.refused:
        names = ", ".join(decided.report.refused)
        raise InvalidRequest(
            f"Anthropic cannot honour: {names}", param=decided.report.refused[0], code="unsupported_parameter"
        )
    system, turns = conversation(request.messages)
    tools, tool_choice = _tools(request, decided, strict=structured_outputs)
    native_schema = decided.json_schema if not decided.json_via_tool else None
    stop = [request.stop] if isinstance(request.stop, str) else request.stop
    return MessagesBody(
        model=model,
        messages=turns,
        max_tokens=max_tokens,
        system=system,
        temperature=request.temperature if decided.keep_temperature else None,
        top_p=request.top_p if decided.keep_top_p else None,
        top_k=_top_k(request) if decided.thinking_budget is None else None,
        stop_sequences=stop or None,
        tools=tools,
        tool_choice=tool_choice,
        thinking=Thinking("enabled", decided.thinking_budget) if decided.thinking_budget else None,
        output_config=OutputConfig(OutputFormat(native_schema)) if native_schema is not None else None,
        metadata=Metadata(request.user) if request.user else None,
        stream=True if stream else None,
    )


def _temperature_fits(temperature: float | None, *, thinking: bool) -> bool:
    # Anthropic's range is 0..1 with a default of 1, and thinking allows only the default
    # (https://docs.anthropic.com/en/api/messages#body-temperature). Leaving out a temperature above 1
    # gives 1, the nearest value Anthropic has; the drop is reported.
    if temperature is None:
        return True
    return temperature == 1 if thinking else temperature <= 1


def _top_k(request: ChatRequest) -> int | None:
    # Anthropic's own sampling parameter, sent by callers as an extra field (and by the inbound Messages
    # protocol); thinking does not allow it
    # (https://docs.anthropic.com/en/docs/build-with-claude/extended-thinking#feature-compatibility).
    value = request.extra.get("top_k")
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else None


def _is_set(request: ChatRequest, name: str, neutral: object) -> bool:
    value: object = getattr(request, name)
    return value is not None and value != neutral


def _refused(request: ChatRequest) -> list[str]:
    refused: list[str] = []
    if request.n is not None and request.n > 1:
        refused.append("n")
    if request.functions or request.function_call is not None:
        refused.append("functions" if request.functions else "function_call")
    if "audio" in request.extra or set(_listed(request.extra.get("modalities"))) - {"text"}:
        # Asking for spoken output: an answer without it would not be what was asked for.
        refused += sorted({"audio", "modalities"} & set(request.extra))
    if _json_schema(request) is not None and any(t.function.name == JSON_TOOL for t in request.tools or ()):
        refused.append("response_format")  # the name llmgate needs for the JSON tool is taken
    refused += _refused_content(request)
    return refused


def _refused_content(request: ChatRequest) -> list[str]:
    found: set[str] = set()
    for message in request.messages:
        if message.role == "function" or message.function_call is not None:
            found.add("messages.function_call")
        if isinstance(message.content, str) or message.content is None:
            continue
        for part in message.content:
            if isinstance(part, AudioPart):
                found.add("messages.content.input_audio")
            elif isinstance(part, FilePart) and not is_pdf_data(part.file):
                found.add("messages.content.file")
            elif isinstance(part, ImagePart) and message.role in ("system", "developer"):
                found.add("messages.system.image_url")
    return sorted(found)


def _listed(value: object) -> list[object]:
    return list(value) if isinstance(value, list) else []


def _wants_json_schema(request: ChatRequest) -> bool:
    return request.response_format is not None and request.response_format.type == "json_schema"


def _json_schema(request: ChatRequest) -> JSONObject | None:
    response_format = request.response_format
    if response_format is None or response_format.type == "text":
        return None
    if response_format.type == "json_schema" and response_format.json_schema is not None:
        return response_format.json_schema.schema or {"type": "object"}
    return {"type": "object"}


def _forced_tool(request: ChatRequest) -> bool:
    choice = request.tool_choice
    return bool(request.tools) and (choice == "required" or isinstance(choice, ToolChoiceFunction))


def _thinking_budget(request: ChatRequest, max_tokens: int | None) -> int | None:
    budget = _THINKING_BUDGETS.get(request.reasoning_effort or "")
    if budget is None:
        return None
    if max_tokens is not None:
        budget = min(budget, max_tokens // 2)
    return budget if budget >= MIN_THINKING_BUDGET else None


def _tools(
    request: ChatRequest, decided: Plan, *, strict: bool
) -> tuple[list[ToolSpec] | None, ToolChoiceSpec | None]:
    tools = [_tool(tool, strict=strict) for tool in request.tools or ()]
    choice = _tool_choice(request) if tools else None
    if decided.json_via_tool and decided.json_schema is not None:
        tools.append(
            ToolSpec(
                name=JSON_TOOL,
                input_schema=decided.json_schema,
                description=_json_tool_description(request),
            )
        )
        # With no tools of the caller's (or tool_choice "none"), the JSON tool is forced; otherwise the
        # model must call some tool, and the JSON tool is how it gives its final answer.
        forced = not request.tools or (choice is not None and choice.type == "none")
        choice = ToolChoiceSpec("tool", name=JSON_TOOL) if forced else ToolChoiceSpec("any")
        if request.parallel_tool_calls is False:
            choice.disable_parallel_tool_use = True
    return tools or None, choice


def _tool(tool: Tool, *, strict: bool) -> ToolSpec:
    function = tool.function
    return ToolSpec(
        name=function.name,
        input_schema=function.parameters or {"type": "object", "properties": {}},
        description=function.description,
        # Strict tool schemas are part of structured outputs, which not every model has.
        strict=function.strict if strict else None,
    )


def _tool_choice(request: ChatRequest) -> ToolChoiceSpec | None:
    choice = request.tool_choice
    if isinstance(choice, ToolChoiceFunction):
        spec = ToolChoiceSpec("tool", name=choice.function.name)
    elif choice == "required":
        spec = ToolChoiceSpec("any")
    elif choice == "none":
        return ToolChoiceSpec("none")
    elif choice == "auto" or request.parallel_tool_calls is False:
        spec = ToolChoiceSpec("auto")
    else:
        return None
    if request.parallel_tool_calls is False:
        # https://docs.anthropic.com/en/docs/agents-and-tools/tool-use/implement-tool-use#parallel-tool-use
        spec.disable_parallel_tool_use = True
    return spec


def _json_tool_description(request: ChatRequest) -> str:
    described = request.response_format.json_schema if request.response_format else None
    intro = "Give your final answer by calling this tool: its input is the answer, as JSON."
    if described is not None and described.description:
        return f"{intro} {described.description}"
    return intro
