"""The toolkit through the library: counting, fitting, condensing, prompts, overflow and structured output."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import pytest
from pydantic import BaseModel

from llmgate import (
    ConfigError,
    ContextLengthExceeded,
    Gateway,
    InvalidRequest,
    ModelNotFound,
    PermissionDenied,
    SchemaViolation,
    SyncGateway,
    load_settings,
)
from llmgate.config import Settings
from llmgate.core.caller import Caller

CONFIG = """
storage: {database: "sqlite:///:memory:"}
providers:
  sim: {type: mock}
models:
  - name: small
    deployments: [{provider: sim, model: mock, context_length: 300}]
    context_overflow: truncate
  - name: tiny
    deployments: [{provider: sim, model: mock, context_length: 300}]
    context_overflow: condense
  - name: strict-window
    deployments: [{provider: sim, model: mock, context_length: 300}]
  - name: gpt
    deployments: [{provider: sim, model: gpt-4o, context_length: 600}]
  - name: cheap
    deployments: [{provider: sim, model: mock}]
prompts:
  greet:
    template: "Hello {{ name }}, you are {{ age }}."
    system: "Be brief."
    description: "a greeting"
    variables: {name: string, age: {type: integer, default: 3}}
"""


def settings(tmp_path: Path, extra: str = "") -> Settings:
    path = tmp_path / "llmgate.yaml"
    path.write_text(CONFIG + extra)
    return load_settings(path, environ={})


def long_conversation(turns: int = 8) -> list[dict[str, str]]:
    messages = [{"role": "system", "content": "be kind"}]
    for i in range(turns):
        messages.append({"role": "user", "content": f"question {i} " + "word " * 60})
        messages.append({"role": "assistant", "content": f"answer {i} " + "word " * 60})
    messages.append({"role": "user", "content": "the final question"})
    return messages


async def test_count_tokens_exact_for_openai_models_estimate_otherwise(tmp_path: Path) -> None:
    async with Gateway(settings(tmp_path)) as gw:
        exact = gw.count_tokens("gpt", "tiktoken is great!")
        assert (exact.tokens, exact.exact, exact.method) == (6, True, "tiktoken:o200k_base")
        assert gw.count_tokens("gpt-4o-mini", "tiktoken is great!").exact  # not configured: counts as itself
        estimate = gw.count_tokens("small", "tiktoken is great!")
        assert (estimate.exact, estimate.method) == (False, "estimate")
        assert gw.count_tokens("gpt", [{"role": "user", "content": "hi"}]).tokens == 3 + 3 + 1 + 1


async def test_fit_uses_the_models_window_and_keeps_system_and_last_turn(tmp_path: Path) -> None:
    messages = long_conversation()
    async with Gateway(settings(tmp_path)) as gw:
        fitted = gw.fit(messages, "gpt", reserve=100)
        assert fitted.exact
        assert fitted.tokens <= 500 < fitted.original_tokens
        assert fitted.messages[0] == messages[0]
        assert fitted.messages[-1] == messages[-1]
        assert fitted.messages[1]["role"] == "user"
        assert gw.count_tokens("gpt", fitted.messages).tokens == fitted.tokens
        with pytest.raises(InvalidRequest, match="context window of 'nowhere' is not known"):
            gw.fit(messages, "nowhere")
        assert gw.fit(messages, "nowhere", window=200).tokens <= 200


async def test_truncate_overflow_serves_instead_of_refusing(tmp_path: Path) -> None:
    async with Gateway(settings(tmp_path)) as gw:
        with pytest.raises(ContextLengthExceeded):
            await gw.chat("strict-window", long_conversation())
        reply = await gw.chat("small", long_conversation())
        assert reply.info.context == "truncated"
        assert reply.usage is not None and reply.usage.prompt_tokens <= 300
        assert "the final question" in reply.text
        short = await gw.chat("small", [{"role": "user", "content": "hi"}])
        assert short.info.context is None


@pytest.mark.parametrize("group", ["small", "tiny"])
async def test_a_streamed_overflow_is_fitted_too(tmp_path: Path, group: str) -> None:
    async with Gateway(settings(tmp_path)) as gw:
        stream = gw.stream(group, long_conversation(), stream_options={"include_usage": True})
        text = "".join([chunk.choices[0].delta.content or "" async for chunk in stream if chunk.choices])
        assert stream.info.context == ("truncated" if group == "small" else "condensed")
        assert "the final question" in text
        assert stream.usage is not None and stream.usage.prompt_tokens <= 300
        with pytest.raises(ContextLengthExceeded):
            async for _ in gw.stream("strict-window", long_conversation()):
                pass


async def test_condense_overflow_summarises_as_the_caller(tmp_path: Path) -> None:
    async with Gateway(settings(tmp_path)) as gw:
        reply = await gw.chat("tiny", long_conversation())
        assert reply.info.context == "condensed"
        assert reply.usage is not None and reply.usage.prompt_tokens <= 300
        await gw.state.recorder.flush()  # type: ignore[union-attr]
        rows = await gw.usage(group_by="group")
        assert sum(row["requests"] for row in rows if row["group"] == "tiny") == 2  # summary + answer


async def test_condense_api_shape(tmp_path: Path) -> None:
    messages = long_conversation()
    async with Gateway(settings(tmp_path)) as gw:
        condensed = await gw.condense(messages, max_tokens=150, model="gpt")
        body = condensed.as_dict()
        assert set(body) == {"summary", "messages", "original_tokens", "condensed_tokens"}
        assert body["summary"]
        assert body["messages"][0] == messages[0]
        assert body["messages"][-1] == messages[-1]
        assert body["condensed_tokens"] <= 150 < body["original_tokens"]
        assert gw.count_tokens("gpt", condensed.messages).tokens == body["condensed_tokens"]
        untouched = await gw.condense(messages[:2], max_tokens=10_000, model="gpt")
        assert untouched.summary is None


async def test_the_summariser_must_be_allowed_for_the_caller(tmp_path: Path) -> None:
    caller = Caller(key_id="k1", models=("small",))
    async with Gateway(settings(tmp_path, "condense: {model: cheap}\n")) as gw:
        with pytest.raises(PermissionDenied):
            await gw.condense(long_conversation(), max_tokens=150, model="gpt", caller=caller)


def test_a_summariser_that_is_not_served_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"condense\.model"):
        Gateway(settings(tmp_path, "condense: {model: nowhere}\n"))


def test_a_broken_template_is_a_config_error(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text('providers: {sim: {type: mock}}\nprompts:\n  bad: {template: "{% if %}"}\n')
    with pytest.raises(ConfigError, match=r"prompt 'bad' template, line 1"):
        Gateway(load_settings(path, environ={}))


async def test_render_and_prompt_bodies(tmp_path: Path) -> None:
    async with Gateway(settings(tmp_path)) as gw:
        assert gw.render("greet", name="Ann").messages() == [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Hello Ann, you are 3."},
        ]
        request = gw.chat_body({"model": "cheap", "prompt": {"name": "greet", "variables": {"name": "Bo"}}})
        assert [m.text() for m in request.messages] == ["Be brief.", "Hello Bo, you are 3."]
        with pytest.raises(InvalidRequest, match="not both"):
            gw.chat_body({"model": "cheap", "messages": [], "prompt": {"name": "greet"}})
        assert gw.prompts()[0]["name"] == "greet"


class Person(BaseModel):
    name: str
    age: int


async def test_response_model_returns_the_parsed_object(tmp_path: Path) -> None:
    async with Gateway(settings(tmp_path)) as gw:
        person = await gw.chat("cheap", [{"role": "user", "content": "Ann"}], response_model=Person)
    assert isinstance(person, Person)
    assert person.name == "Ann"


def test_the_sync_gateway_has_the_toolkit(tmp_path: Path) -> None:
    with SyncGateway(settings(tmp_path)) as gw:
        assert gw.count_tokens("gpt", "tiktoken is great!").tokens == 6
        assert gw.fit(long_conversation(), "gpt").tokens <= 600
        assert gw.condense(long_conversation(), max_tokens=150, model="gpt").condensed_tokens <= 150
        assert gw.render("greet", name="x").user == "Hello x, you are 3."
        assert isinstance(gw.chat("cheap", [{"role": "user", "content": "A"}], response_model=Person), Person)
        assert gw.stats()["total_requests"] >= 2
        assert gw.health()["status"] in ("ok", "degraded")
        assert any(card.id == "cheap" for card in gw.models())
        assert gw.is_available("cheap") and gw.provider_health()
        with pytest.raises(ModelNotFound):
            gw.chat("nowhere", [{"role": "user", "content": "A"}])
        assert [row["error_type"] for row in gw.recent_errors()][:1] == ["model_not_found"]
        series = gw.usage_series(since=time.time() - 600, step=60)
        assert sum(row["requests"] for row in series) >= 3


async def test_an_exact_count_near_the_window_decides_not_the_estimate(tmp_path: Path) -> None:
    # CJK text: ~1 token per character, where the estimate assumes 4 characters per token
    text = "漢字仮名交じり文" * 70  # 560 characters: estimated at 420 tokens (under the window), exact ~630
    async with Gateway(settings(tmp_path)) as gw:
        exact = gw.count_tokens("gpt", [{"role": "user", "content": text}]).tokens
        assert exact > 600
        with pytest.raises(ContextLengthExceeded, match=f"about {exact} tokens"):
            await gw.chat("gpt", [{"role": "user", "content": text}])


async def test_a_strict_stream_off_its_schema_ends_with_an_error(tmp_path: Path) -> None:
    schema = {"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]}
    fmt = {"type": "json_schema", "json_schema": {"name": "n", "schema": schema, "strict": True}}
    async with Gateway(settings(tmp_path)) as gw:
        good = gw.stream("cheap", [{"role": "user", "content": "x"}], response_format=fmt)
        text = "".join([c.choices[0].delta.content or "" async for c in good if c.choices])
        assert json.loads(text) == {"n": 1}
        # one token: the mock cuts its JSON after 4 characters
        cut = gw.stream("cheap", [{"role": "user", "content": "x"}], response_format=fmt, max_tokens=1)
        with pytest.raises(SchemaViolation, match="schema 'n': the reply is not JSON"):
            async for _ in cut:
                pass
        assert cut.info.provider == "sim"
        loose = {**fmt, "json_schema": {**fmt["json_schema"], "strict": False}}
        unchecked = gw.stream(
            "cheap", [{"role": "user", "content": "x"}], response_format=loose, max_tokens=1
        )
        async for _ in unchecked:  # without strict a stream is not checked (nothing can be asked again)
            pass


async def test_an_invalid_loose_reply_is_never_cached_and_never_blocks_the_next(tmp_path: Path) -> None:
    fmt = {
        "type": "json_schema",
        "json_schema": {"name": "x", "schema": {"type": "object", "required": ["a"]}},
    }
    cached = settings(tmp_path, "cache: {mode: exact}\n")
    async with Gateway(cached) as gw:
        for _ in range(2):  # the second used to wait forever on the first one's cache flight
            reply = await asyncio.wait_for(
                gw.chat("cheap", [{"role": "user", "content": "hi"}], response_format=fmt, max_tokens=1), 5
            )
            assert (reply.info.schema, reply.info.cache) == ("invalid", "miss")


async def test_a_million_spaces_count_without_a_panic(tmp_path: Path) -> None:
    async with Gateway(settings(tmp_path)) as gw:
        count = gw.count_tokens("gpt", " " * 1_000_000)
        assert count.exact and 0 < count.tokens < 20_000
        with pytest.raises(ContextLengthExceeded, match=f"about {count.tokens + 7} tokens"):
            await gw.chat("gpt", [{"role": "user", "content": " " * 1_000_000}])  # 400, not a panic (3+3+1)
        with pytest.raises(ContextLengthExceeded):
            await gw.chat(
                "gpt", [{"role": "user", "content": "1-" * 700}]
            )  # estimated under 600, over exactly


async def test_no_work_before_the_model_list_refuses(tmp_path: Path) -> None:
    caller = Caller(key_id="k1", models=("cheap",))
    async with Gateway(settings(tmp_path, "condense: {model: cheap}\n")) as gw:
        with pytest.raises(PermissionDenied, match="'tiny'"):
            await gw.complete(gw.chat_body({"model": "tiny", "messages": long_conversation()}), caller=caller)
        await gw.state.recorder.flush()  # type: ignore[union-attr]
        rows = await gw.usage(group_by="group")
        assert [row["group"] for row in rows] == ["tiny"]  # the refusal only: no summary was written


async def test_each_window_is_checked_with_its_own_count(tmp_path: Path) -> None:
    mixed = """
  - name: mixed
    deployments:
      - {provider: sim, model: mock, context_length: 600}
      - {provider: sim, model: gpt-4o, context_length: 600}
"""
    path = tmp_path / "mixed.yaml"
    path.write_text(CONFIG.replace("prompts:", mixed.lstrip("\n") + "prompts:", 1))
    async with Gateway(load_settings(path, environ={})) as gw:
        prompt = [{"role": "user", "content": "word " * 520}]  # estimate ~657, exact for gpt-4o ~528
        for _ in range(4):
            reply = await gw.chat("mixed", prompt)
            assert reply.info.upstream_model == "gpt-4o"  # the mock's own estimate is over its window
