"""Parameters an adapter cannot honour: dropped ones are listed, refused ones are a 400 naming them."""

from __future__ import annotations

import pytest
from starlette.testclient import TestClient

from llmgate import Gateway, InvalidRequest
from llmgate.core.headroom import ParamReport
from llmgate.core.request import ChatRequest
from llmgate.providers.mock import MockProvider
from llmgate.routing.deployments import ProviderAccount
from llmgate.routing.router import Router
from llmgate.server.app import create_app

HELLO = [{"role": "user", "content": "hello"}]


class Picky(MockProvider):
    """Drops logprobs, cannot do n > 1."""

    def check(self, request: ChatRequest) -> ParamReport:
        dropped = ("logprobs",) if request.logprobs is not None else ()
        refused = ("n",) if (request.n or 1) > 1 else ()
        return ParamReport(dropped, refused)


def picky_gateway() -> Gateway:
    gw = Gateway()
    account = ProviderAccount("picky", "mock", Picky(name="picky"))
    gw.router = gw.calls.router = Router(groups={}, accounts={"picky": account})
    return gw


async def test_dropped_params_are_reported_and_refused_ones_raise() -> None:
    async with picky_gateway() as gw:
        reply = await gw.chat("picky:echo", HELLO, logprobs=True)
        assert reply.info.dropped_params == ("logprobs",)
        assert (await gw.chat("picky:echo", HELLO)).info.dropped_params == ()
        with pytest.raises(InvalidRequest) as caught:
            await gw.chat("picky:echo", HELLO, n=2)
        assert caught.value.param == "n"
        assert caught.value.code == "unsupported_parameter"
        stream = gw.stream("picky:echo", HELLO, logprobs=True)
        await stream.start()  # routing happens when the stream starts
        assert stream.info.dropped_params == ("logprobs",)
        await stream.aclose()


def test_server_lists_dropped_params_in_a_header() -> None:
    with TestClient(create_app(picky_gateway())) as client:
        body = {"model": "picky:echo", "messages": HELLO, "logprobs": True}
        response = client.post("/v1/chat/completions", json=body)
        assert response.headers["x-llmgate-dropped-params"] == "logprobs"
        plain = client.post("/v1/chat/completions", json={"model": "picky:echo", "messages": HELLO})
        assert "x-llmgate-dropped-params" not in plain.headers
        refused = client.post("/v1/chat/completions", json={"model": "picky:echo", "messages": HELLO, "n": 3})
        assert refused.status_code == 400
        assert refused.json()["error"]["param"] == "n"


class Untidy(MockProvider):
    """Reports caller-chosen field names as dropped, some not fit for a header."""

    def check(self, request: ChatRequest) -> ParamReport:
        return ParamReport(tuple(sorted(request.extra)), ())


def test_unsafe_dropped_names_are_left_out_of_the_header() -> None:
    gw = Gateway()
    gw.router = gw.calls.router = Router(
        groups={}, accounts={"untidy": ProviderAccount("untidy", "mock", Untidy(name="untidy"))}
    )
    with TestClient(create_app(gw)) as client:
        for stream in (False, True):
            body = {
                "model": "untidy:echo",
                "messages": HELLO,
                "stream": stream,
                "\u2603": 1,
                "a\u0001b": 2,
                "ok_name": 3,
            }
            response = client.post("/v1/chat/completions", json=body)
            assert response.status_code == 200
            assert response.headers["x-llmgate-dropped-params"] == "ok_name"
