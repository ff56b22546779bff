#!/usr/bin/env python3
"""Raw-socket fuzzer for llmgate's HTTP edge (SPEC.md section 13: every bad input gets a clear 4xx with an
OpenAI error body; never a 500, a hang, or a connection closed without an answer).

    .venv/bin/python bench/fuzz_socket.py                      # both auth modes, ~3 minutes
    .venv/bin/python bench/fuzz_socket.py --cases 3000 --seconds 600 --seed 7
    .venv/bin/python bench/fuzz_socket.py --url http://127.0.0.1:8000 [--master-key KEY]
    .venv/bin/python bench/fuzz_socket.py --only 'headers/no-colon' -v  # one case, with its exchange
    .venv/bin/python bench/fuzz_socket.py --replay case-0042.bin --url http://127.0.0.1:8000

Without ``--url`` it starts ``llmgate serve`` itself (no config: the built-in ``mock`` provider, open mode
on 127.0.0.1; with ``--auth master`` also ``LLMGATE_MASTER_KEY``), under an address-space limit
(``--memory-limit``, default 4 GB, so that an unbounded allocation kills the gateway rather than the
machine: an exit is reported as a finding and the gateway restarted), with a data directory of its own.

What it sends, over asyncio streams to 127.0.0.1 (every byte chosen by this script):

* hand-written cases: malformed request lines, unknown methods, NUL / CR / LF / 0x80-0xff bytes in
  paths, header names and values (``x-request-id``, ``x-llmgate-timeout``, ``x-llmgate-fallbacks``,
  ``Authorization``), header lines without a colon, 100 KB headers, many headers, bad / duplicate /
  huge ``Content-Length``, ``Transfer-Encoding`` with ``Content-Length``, bad chunk sizes, bodies that
  are valid JSON with hostile values (huge numbers, nesting 10^5 deep, ``dimensions`` 10^10, ``n`` /
  ``max_tokens`` / ``top_logprobs`` huge, thousands of stop sequences and tools), odd unicode and
  control characters in ``model``, and slow clients (an incomplete request, then silence);
* seeded random mutations of valid requests (request line, headers, JSON values, bytes, framing):
  the same ``--seed`` gives the same cases, each named ``mutation/NNNN``.

Each case records its outcome (a status, ``closed`` without a response, ``reset``, ``truncated``,
``hang``), the content type, whether an error body is an OpenAI error, and the time taken; after each
case ``/health`` must still answer. A complete request must be answered within ``--timeout`` seconds
(one that is not is retried among the slow cases, in case the server reads it as incomplete); an
incomplete one (the client stops and waits) must be answered or closed within ``--slow-timeout``
(the server's header / body timeouts, 10 s by default, plus a margin). The slow cases run at the end,
concurrently, while ``/health`` is checked.

At the end: a summary table (cases, outcomes, 5xx, hangs, closes without a response, non-JSON errors,
...), each distinct failure once with a reproducer, and everything in ``--out`` (default
``bench/results/fuzz-socket-<time>/``: ``results.jsonl``, ``summary.txt``, ``case-NNNN.bin`` with the
exact bytes of each failing case). Exit status: 0 no failure, 1 failures, 2 could not run.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import copy
import datetime as dt
import json
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
DEFAULT_MASTER_KEY = "sk-fuzz-master-key"
BODY_KEEP = 65_536  # bytes of a response body kept for the checks
HEALTH_TIMEOUT = 5.0
SLOW_CONCURRENCY = 200
REPRODUCED = 3  # examples (with reproducers) per distinct failure
MiB = 1024 * 1024
INJECTED = (b"x-injected", b"x-evil")  # header names a case tries to smuggle into a response

Part = bytes | float  # bytes to write, or seconds to wait before the next part


# --- cases --------------------------------------------------------------------------------------------


@dataclass
class Case:
    """One exchange: what to write (bytes and pauses), and what kind of request it is.

    ``kind`` ``answer``: a complete request, however malformed: it must get an HTTP response.
    ``kind`` ``incomplete``: the client stops short and waits: the server must answer or close in time.
    ``expect``: statuses that make sense (default: anything below 500, errors OpenAI-shaped).
    """

    name: str
    parts: list[Part]
    kind: str = "answer"
    expect: frozenset[int] | None = None
    timeout: float | None = None  # overrides --timeout for a case that is slow on purpose
    note: str = ""

    @property
    def category(self) -> str:
        return self.name.split("/", 1)[0]

    @property
    def data(self) -> bytes:
        return b"".join(part for part in self.parts if isinstance(part, bytes))


@dataclass
class Ctx:
    """What the case builders need to know about the target."""

    host: str
    port: int
    master_key: str | None

    @property
    def host_header(self) -> bytes:
        return f"{self.host}:{self.port}".encode()

    def auth(self) -> list[tuple[bytes, bytes]]:
        return [(b"Authorization", b"Bearer " + self.master_key.encode())] if self.master_key else []


def chat_body(**fields: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"model": "mock:echo", "messages": [{"role": "user", "content": "hi"}]}
    body.update(fields)
    return body


def dumps(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode()


def request(
    ctx: Ctx,
    method: bytes,
    target: bytes,
    body: bytes | None = None,
    *,
    headers: Sequence[tuple[bytes, bytes]] = (),
    raw_headers: Sequence[bytes] = (),
    version: bytes = b"HTTP/1.1",
    host: bool = True,
    auth: bool = True,
    length: bool = True,
    content_type: bool = True,
) -> bytes:
    """An HTTP/1.1 request; ``raw_headers`` are header lines written as they are."""
    lines = [method + b" " + target + b" " + version if version else method + b" " + target]
    if host:
        lines.append(b"Host: " + ctx.host_header)
    if auth:
        lines.extend(name + b": " + value for name, value in ctx.auth())
    if body is not None and content_type:
        lines.append(b"Content-Type: application/json")
    if body is not None and length:
        lines.append(b"Content-Length: " + str(len(body)).encode())
    lines.extend(name + b": " + value for name, value in headers)
    lines.extend(raw_headers)
    return b"\r\n".join(lines) + b"\r\n\r\n" + (body or b"")


def post(ctx: Ctx, path: bytes, body: bytes, **options: Any) -> bytes:
    return request(ctx, b"POST", path, body, **options)


def chat(ctx: Ctx, body: Any = None, **options: Any) -> bytes:
    raw = body if isinstance(body, bytes) else dumps(chat_body() if body is None else body)
    return post(ctx, b"/v1/chat/completions", raw, **options)


def embed(ctx: Ctx, body: Any, **options: Any) -> bytes:
    return post(ctx, b"/v1/embeddings", body if isinstance(body, bytes) else dumps(body), **options)


def get(ctx: Ctx, target: bytes, **options: Any) -> bytes:
    return request(ctx, b"GET", target, **options)


def nested(depth: int, open_: bytes = b"[", close: bytes = b"]") -> bytes:
    return open_ * depth + close * depth


def chunked(body: bytes, sizes: Iterable[int]) -> bytes:
    out, at = [], 0
    for size in sizes:
        piece = body[at : at + size]
        at += size
        if piece:
            out.append(f"{len(piece):x}\r\n".encode() + piece + b"\r\n")
    if at < len(body):
        out.append(f"{len(body) - at:x}\r\n".encode() + body[at:] + b"\r\n")
    return b"".join(out) + b"0\r\n\r\n"


HOSTILE_MODELS: list[tuple[str, bytes]] = [
    # (label, the JSON text of the value)
    ("cafe-cjk", '"mock:café中"'.encode()),
    ("cafe-cjk-escaped", b'"mock:caf\\u00e9\\u4e2d"'),
    ("crlf-header", b'"mock:a\\r\\nx-injected: 1"'),
    ("lf", b'"mock:a\\nx-injected: 1"'),
    ("nul", b'"mock:\\u0000"'),
    ("del", b'"mock:\\u007f"'),
    ("c1-nel", b'"mock:\\u0085"'),
    ("tab", b'"mock:a\\tb"'),
    ("line-separator", b'"mock:a\\u2028b"'),
    ("rtl-override", b'"mock:\\u202eevil"'),
    ("zero-width", b'"mock:\\u200b\\ufeff"'),
    ("emoji", '"mock:🦜🔥"'.encode()),
    ("lone-surrogate", b'"mock:\\ud800"'),
    ("raw-invalid-utf8", b'"mock:\xff\xfe"'),
    ("raw-overlong-utf8", b'"mock:\xc0\xaf"'),
    ("long-256", dumps("mock:" + "a" * 251)),
    ("long-257", dumps("mock:" + "a" * 252)),
    ("long-1mb", dumps("mock:" + "a" * MiB)),
    ("non-ascii-256", dumps("mock:" + "é" * 251)),
    ("empty", b'""'),
    ("colon-only", b'":"'),
    ("provider-only", b'"mock:"'),
    ("slash", b'"mock/echo"'),
    ("traversal", b'"../../etc/passwd"'),
    ("percent-crlf", b'"mock:%0d%0ax-injected:%201"'),
    ("unknown", b'"no-such-model"'),
    ("int", b"42"),
    ("null", b"null"),
    ("list", b'["mock:echo"]'),
    ("object", b'{"name":"mock:echo"}'),
]

HUGE_INT = b"1" + b"0" * 5000  # beyond Python's 4300-digit int<->str limit
HOSTILE_NUMBERS: list[tuple[str, bytes]] = [
    ("1e999", b"1e999"),
    ("-1e999", b"-1e999"),
    ("int-5000-digits", HUGE_INT),
    ("2^63", str(2**63).encode()),
    ("2^64", str(2**64).encode()),
    ("-2^63-1", str(-(2**63) - 1).encode()),
    ("1e-400", b"1e-400"),
    ("-0", b"-0"),
    ("1e9", b"1000000000"),
    ("float-int", b"5.0"),
]


def hand_cases(ctx: Ctx) -> list[Case]:
    """The hand-written cases, in a fixed order."""
    cases: list[Case] = []

    def add(name: str, data: bytes | list[Part], **options: Any) -> None:
        cases.append(Case(name, data if isinstance(data, list) else [data], **options))

    h = ctx.host_header
    ok = chat(ctx)
    # -- baseline: valid requests that must work
    add("baseline/chat", ok, expect=frozenset({200}))
    add("baseline/chat-stream", chat(ctx, chat_body(stream=True)), expect=frozenset({200}))
    add(
        "baseline/embeddings",
        embed(ctx, {"model": "mock:mock-embed", "input": "hi"}),
        expect=frozenset({200}),
    )
    add("baseline/models", get(ctx, b"/v1/models"), expect=frozenset({200}))
    add("baseline/model", get(ctx, b"/v1/models/mock:echo"), expect=frozenset({200, 404}))
    add("baseline/health", get(ctx, b"/health"), expect=frozenset({200}))
    # -- request lines
    for label, line in [
        ("garbage", b"GARBAGE"),
        ("empty-line", b""),
        ("method-only", b"GET"),
        ("no-version", b"GET /health"),
        ("http-0.9", b"GET /health HTTP/0.9"),
        ("http-2.0", b"GET /health HTTP/2.0"),
        ("http-9.9", b"GET /health HTTP/9.9"),
        ("version-junk", b"GET /health HTTP/1.1x"),
        ("lowercase-version", b"GET /health http/1.1"),
        ("double-spaces", b"GET  /health  HTTP/1.1"),
        ("tab-separated", b"GET\t/health\tHTTP/1.1"),
        ("trailing-space", b"GET /health HTTP/1.1 "),
        ("leading-space", b" GET /health HTTP/1.1"),
        ("nul-in-line", b"GET /health\x00 HTTP/1.1"),
        ("high-bytes-line", b"\x80\xff\xfe /health HTTP/1.1"),
        ("tls-client-hello", b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + bytes(range(32))),
        ("http2-preface", b"PRI * HTTP/2.0\r\n\r\nSM"),
    ]:
        add(f"request-line/{label}", line + b"\r\nHost: " + h + b"\r\n\r\n")
    add("request-line/bare-crlf-prefix", b"\r\n\r\n" + get(ctx, b"/health"))
    add("request-line/lf-only", b"GET /health HTTP/1.1\nHost: " + h + b"\n\n")
    add("request-line/cr-only", b"GET /health HTTP/1.1\rHost: " + h + b"\r\r")
    add("request-line/long-method-10k", get(ctx, b"/health").replace(b"GET", b"G" * 10_000, 1))
    add("request-line/absolute-form", get(ctx, b"http://evil.example/v1/models"))
    add("request-line/asterisk", get(ctx, b"*"))
    add("request-line/no-leading-slash", get(ctx, b"v1/models"))
    # -- methods
    for method in [
        b"FOO",
        b"PROPFIND",
        b"BREW",
        b"M-SEARCH",
        b"TRACE",
        b"PUT",
        b"DELETE",
        b"PATCH",
        b"OPTIONS",
        b"HEAD",
        b"get",
        b"G\x80T",
        b"GE\x00T",
    ]:
        label = method.decode("latin-1").encode("unicode_escape").decode()
        add(f"method/{label}-models", request(ctx, method, b"/v1/models"))
        add(f"method/{label}-chat", request(ctx, method, b"/v1/chat/completions", dumps(chat_body())))
    add("method/connect", request(ctx, b"CONNECT", b"127.0.0.1:1"))
    add("method/options-asterisk", request(ctx, b"OPTIONS", b"*"))
    add("method/GET-chat-path", get(ctx, b"/v1/chat/completions"))
    add("method/get-embeddings", get(ctx, b"/v1/embeddings"))
    add("method/post-models", post(ctx, b"/v1/models", b"{}"))
    # -- paths
    for label, path in [
        ("nul", b"/v1/mod\x00els"),
        ("cr", b"/v1/mod\rels"),
        ("lf", b"/v1/mod\nels"),
        ("high-bytes", b"/v1/models/\x80\xff"),
        ("raw-utf8", "/v1/models/mock:café中".encode()),
        ("pct-nul", b"/v1/models/%00"),
        ("pct-crlf", b"/v1/models/mock:a%0d%0ax-injected:%201"),
        ("pct-invalid-utf8", b"/v1/models/%ff%fe"),
        ("pct-bad", b"/v1/models/%zz%"),
        ("pct-colon", b"/v1/models/mock%3Aecho"),
        ("traversal", b"/v1/models/..%2F..%2Fetc%2Fpasswd"),
        ("dot-segments", b"/v1/../v1/./models"),
        ("double-slash", b"//v1//models"),
        ("query-junk", b"/v1/models?%%%&&==&a=%00"),
        ("fragment", b"/v1/models#frag"),
        ("long-8k", b"/v1/models/" + b"a" * 8_000),
        ("long-100k", b"/v1/models/" + b"a" * 100_000),
        (
            "api-search-junk",
            b"/api/models/search?q=%00&min_context=abc&max_input_cost=nan&supports_chat=maybe",
        ),
        ("api-search-huge", b"/api/models/search?min_context=1e999&max_input_cost=-1e999&q=" + b"x" * 5000),
        ("api-model-pct-crlf", b"/api/models/a%0d%0ax-injected:%201"),
        ("health-query", b"/health?%ff"),
    ]:
        add(f"path/{label}", get(ctx, path))
    add("path/chat-nul", chat(ctx).replace(b"/v1/chat/completions", b"/v1/chat/completions\x00", 1))
    add("path/chat-trailing-slash", post(ctx, b"/v1/chat/completions/", dumps(chat_body())))
    # -- header lines
    for label, line in [
        ("no-colon", b"Foo"),
        ("space-before-colon", b"X-Request-Id : abc"),
        ("space-in-name", b"Foo Bar: x"),
        ("empty-name", b": x"),
        ("obs-fold", b"X-Foo: a\r\n folded"),
        ("nul-in-name", b"X-F\x00oo: a"),
        ("high-bytes-name", b"X-\x80\xff: a"),
        ("nul-in-value", b"X-Foo: a\x00b"),
        ("bare-cr-in-value", b"X-Foo: a\rb"),
        ("del-in-value", b"X-Foo: a\x7fb"),
        ("high-bytes-value", b"X-Foo: \x80\xff\xfe"),
        ("colon-only", b":"),
        ("request-id-high-bytes", b"x-request-id: \x80\xff\xfe"),
        ("request-id-nul", b"x-request-id: a\x00b"),
        ("request-id-cr", b"x-request-id: a\rx-injected: 1"),
        ("request-id-long", b"x-request-id: " + b"a" * 200),
        ("request-id-crlf-pct", b"x-request-id: a%0d%0ax-injected:%201"),
        ("request-id-tab", b"x-request-id: a\tb"),
        ("timeout-high-bytes", b"x-llmgate-timeout: 1\xff"),
        ("timeout-nul", b"x-llmgate-timeout: 1\x00"),
        ("fallbacks-high-bytes", b"x-llmgate-fallbacks: mock:caf\xe9,\x80\xff"),
        ("fallbacks-nul", b"x-llmgate-fallbacks: a\x00b"),
        ("authorization-high-bytes", b"Authorization: Bearer \x80\xff\xfe"),
        ("authorization-nul", b"Authorization: Bearer a\x00b"),
        ("authorization-cr", b"Authorization: Bearer a\rb"),
        ("content-type-high-bytes", b"Content-Type: application/json; charset=\xff"),
    ]:
        for target, data in [
            ("chat", chat(ctx, raw_headers=[line])),
            ("models", get(ctx, b"/v1/models", raw_headers=[line])),
        ]:
            add(f"headers/{label}-{target}", data)
    # x-llmgate-timeout / x-llmgate-fallbacks values the parser lets through
    for value in [
        b"nan",
        b"inf",
        b"-inf",
        b"-1",
        b"0",
        b"1e309",
        b"0x10",
        b"1_0",
        b"",
        b"  5  ",
        b"99999999999999999999",
        b"a" * 50_000,
    ]:
        add(f"headers/timeout-{value[:12].decode()}", chat(ctx, headers=[(b"x-llmgate-timeout", value)]))
    add(
        "headers/timeout-1e-300",
        chat(ctx, headers=[(b"x-llmgate-timeout", b"1e-300")]),
        expect=frozenset({200, 504}),
    )
    for label, value in [
        ("11-groups", b",".join(b"g%d" % i for i in range(11))),
        ("10-groups", b",".join(b"g%d" % i for i in range(10))),
        ("commas", b"," * 5000),
        ("unknown", b"no-such-group"),
        ("mock", b"mock:echo"),
        ("tab-name", b"mock:a\tb"),
        ("long", b"g" * 50_000),
    ]:
        add(f"headers/fallbacks-{label}", chat(ctx, headers=[(b"x-llmgate-fallbacks", value)]))
        add(
            f"headers/fallbacks-{label}-unknown-model",
            chat(ctx, chat_body(model="no-such-model"), headers=[(b"x-llmgate-fallbacks", value)]),
        )
    for label, value in [
        ("bearer-empty", b"Bearer"),
        ("bearer-spaces", b"Bearer    "),
        ("basic", b"Basic Zm9vOmJhcg=="),
        ("no-scheme", b"sk-something"),
        ("bearer-100k", b"Bearer " + b"k" * 100_000),
        ("bearer-tab", b"Bearer\tsk-x"),
        ("bearer-lowercase", b"bearer " + (ctx.master_key or "x").encode()),
        ("bearer-master-plus-high", b"Bearer " + (ctx.master_key or "x").encode() + b"\xff"),
    ]:
        add(f"auth/{label}-chat", chat(ctx, auth=False, headers=[(b"Authorization", value)]))
        add(f"auth/{label}-models", get(ctx, b"/v1/models", auth=False, headers=[(b"Authorization", value)]))
    add(
        "auth/x-api-key-high-bytes",
        get(ctx, b"/v1/models", auth=False, headers=[(b"x-api-key", b"\x80\xff")]),
    )
    add("auth/no-key", get(ctx, b"/v1/models", auth=False))
    add(
        "auth/duplicate-wrong-first",
        get(ctx, b"/v1/models", auth=False, headers=[(b"Authorization", b"Bearer wrong"), *ctx.auth()]),
    )
    add(
        "auth/duplicate-right-first",
        get(ctx, b"/v1/models", auth=False, headers=[*ctx.auth(), (b"Authorization", b"Bearer wrong")]),
    )
    add("auth/admin-keys", get(ctx, b"/admin/keys"))
    add("auth/admin-create-junk", post(ctx, b"/admin/keys", b'{"name": 1e999, "models": "x"}'))
    # -- sizes and counts of headers
    add("headers/value-100k", chat(ctx, headers=[(b"X-Big", b"v" * 100_000)]))
    add("headers/value-1m", chat(ctx, headers=[(b"X-Big", b"v" * MiB)]))
    add("headers/name-100k", chat(ctx, headers=[(b"X" * 100_000, b"v")]))
    add("headers/many-1000", chat(ctx, headers=[(b"X-H%d" % i, b"v") for i in range(1000)]))
    add("headers/many-20000", chat(ctx, headers=[(b"X-H%d" % i, b"v") for i in range(20_000)]))
    add("headers/duplicate-request-id", chat(ctx, headers=[(b"x-request-id", b"a"), (b"x-request-id", b"b")]))
    add("headers/duplicate-host", chat(ctx, headers=[(b"Host", b"evil")]))
    add("headers/no-host", chat(ctx, host=False))
    add("headers/http10-no-host", request(ctx, b"GET", b"/health", version=b"HTTP/1.0", host=False))
    add("headers/duplicate-content-type", chat(ctx, headers=[(b"Content-Type", b"text/plain")]))
    add("headers/no-content-type", chat(ctx, content_type=False))
    add(
        "headers/content-type-form",
        chat(ctx, content_type=False, headers=[(b"Content-Type", b"application/x-www-form-urlencoded")]),
    )
    add("headers/expect-100", chat(ctx, headers=[(b"Expect", b"100-continue")]))
    add("headers/expect-junk", chat(ctx, headers=[(b"Expect", b"bananas")]))
    add(
        "headers/upgrade-h2c",
        get(
            ctx,
            b"/health",
            headers=[
                (b"Connection", b"Upgrade, HTTP2-Settings"),
                (b"Upgrade", b"h2c"),
                (b"HTTP2-Settings", b"AAMAAABkAARAAAAAAAIAAAAA"),
            ],
        ),
    )
    add(
        "headers/upgrade-websocket",
        get(
            ctx,
            b"/v1/models",
            headers=[
                (b"Connection", b"Upgrade"),
                (b"Upgrade", b"websocket"),
                (b"Sec-WebSocket-Key", b"dGhlIHNhbXBsZSBub25jZQ=="),
                (b"Sec-WebSocket-Version", b"13"),
            ],
        ),
    )
    add("headers/connection-close", chat(ctx, headers=[(b"Connection", b"close")]))
    add("headers/accept-encoding-junk", chat(ctx, headers=[(b"Accept-Encoding", b"\x80, *;q=nan")]))
    add("headers/content-encoding-gzip", chat(ctx, headers=[(b"Content-Encoding", b"gzip")]))
    # -- Content-Length
    body = dumps(chat_body())
    for label, value in [
        ("letters", b"abc"),
        ("negative", b"-1"),
        ("plus", b"+%d" % len(body)),
        ("hex", b"0x%x" % len(body)),
        ("spaces", b" %d " % len(body)),
        ("list-same", b"%d, %d" % (len(body), len(body))),
        ("overflow", b"99999999999999999999999999"),
        ("empty", b""),
        ("smaller", b"%d" % (len(body) - 5)),
        ("zero", b"0"),
    ]:
        add(f"content-length/{label}", chat(ctx, body, length=False, headers=[(b"Content-Length", value)]))
    add("content-length/duplicate-same", chat(ctx, body, headers=[(b"Content-Length", b"%d" % len(body))]))
    add(
        "content-length/duplicate-different",
        chat(ctx, body, headers=[(b"Content-Length", b"%d" % (len(body) + 1))]),
    )
    add(
        "content-length/huge-declared",
        chat(ctx, body, length=False, headers=[(b"Content-Length", b"%d" % 10**12)]),
    )
    add(
        "content-length/over-limit-sent",
        chat(ctx, b'{"model":"mock:echo","messages":[],"x":"' + b"a" * (21 * MiB) + b'"}'),
        timeout=30,
    )
    add("content-length/get-with-body", request(ctx, b"GET", b"/v1/models", b"{}"))
    add("content-length/empty-body-post", chat(ctx, b""))
    # -- Transfer-Encoding
    add(
        "transfer-encoding/chunked-valid",
        chat(ctx, chunked(body, [7, 13]), length=False, headers=[(b"Transfer-Encoding", b"chunked")]),
        expect=frozenset({200}),
    )
    add(
        "transfer-encoding/chunked-plus-length",
        chat(ctx, chunked(body, [7]), headers=[(b"Transfer-Encoding", b"chunked")]),
    )
    add(
        "transfer-encoding/length-plus-chunked",
        chat(
            ctx,
            chunked(body, [7]),
            length=False,
            headers=[(b"Content-Length", b"3"), (b"Transfer-Encoding", b"chunked")],
        ),
    )
    for label, value in [
        ("gzip", b"gzip"),
        ("chunked-twice", b"chunked, chunked"),
        ("xchunked", b"xchunked"),
        ("gzip-chunked", b"gzip, chunked"),
        ("identity", b"identity"),
        ("high-bytes", b"chunked\xff"),
    ]:
        add(
            f"transfer-encoding/{label}",
            chat(ctx, chunked(body, [9]), length=False, headers=[(b"Transfer-Encoding", value)]),
        )
    add(
        "transfer-encoding/space-before-colon",
        chat(ctx, chunked(body, [9]), length=False, raw_headers=[b"Transfer-Encoding : chunked"]),
    )
    for label, chunks in [
        ("size-letters", b"zz\r\nabc\r\n0\r\n\r\n"),
        ("size-negative", b"-1\r\nabc\r\n0\r\n\r\n"),
        ("size-overflow", b"ffffffffffffffffffffffff\r\nabc\r\n0\r\n\r\n"),
        ("size-with-ext", b'%x;ext=1;q="x"\r\n' % len(body) + body + b"\r\n0\r\n\r\n"),
        ("size-space", b" %x \r\n" % len(body) + body + b"\r\n0\r\n\r\n"),
        ("size-too-small", b"2\r\n" + body + b"\r\n0\r\n\r\n"),
        ("missing-crlf", b"%x\r\n" % len(body) + body + b"0\r\n\r\n"),
        ("nul-in-size", b"1\x00\r\na\r\n0\r\n\r\n"),
        ("bad-trailer", b"%x\r\n" % len(body) + body + b"\r\n0\r\nX-Trailer\x00: \xff\r\nno colon\r\n\r\n"),
        ("lf-only", b"%x\n" % len(body) + body + b"\n0\n\n"),
    ]:
        add(f"chunks/{label}", chat(ctx, chunks, length=False, headers=[(b"Transfer-Encoding", b"chunked")]))
    big = b'{"model":"mock:echo","messages":[],"x":"' + b"a" * (21 * MiB) + b'"}'
    add(
        "chunks/over-limit",
        chat(ctx, chunked(big, [MiB] * 22), length=False, headers=[(b"Transfer-Encoding", b"chunked")]),
        timeout=30,
    )
    # -- bodies: not JSON or not an object
    for label, raw in [
        ("empty-object", b"{}"),
        ("null", b"null"),
        ("array", b"[]"),
        ("string", b'"x"'),
        ("number", b"1e999999"),
        ("truncated", body[:-3]),
        ("trailing-junk", body + b"xyz"),
        (
            "nan-literal",
            b'{"model":"mock:echo","messages":[{"role":"user","content":"hi"}],"temperature":NaN}',
        ),
        (
            "infinity-literal",
            b'{"model":"mock:echo","messages":[{"role":"user","content":"hi"}],"temperature":Infinity}',
        ),
        ("bom", b"\xef\xbb\xbf" + body),
        ("utf16", json.dumps(chat_body()).encode("utf-16")),
        ("invalid-utf8", b'{"model":"mock:echo","messages":[{"role":"user","content":"\xff\xfe"}]}'),
        ("lone-surrogate-content", b'{"model":"mock:echo","messages":[{"role":"user","content":"\\udc00"}]}'),
        (
            "duplicate-keys",
            b'{"model":"nope","model":"mock:echo","messages":[{"role":"user","content":"hi"}]}',
        ),
        (
            "control-chars-content",
            b'{"model":"mock:echo","messages":[{"role":"user","content":"a\x00\x01\x1f"}]}',
        ),
        (
            "escaped-controls-content",
            dumps(chat_body(messages=[{"role": "user", "content": "".join(map(chr, range(32)))}])),
        ),
        (
            "deep-array-1e5",
            b'{"model":"mock:echo","messages":[{"role":"user","content":"hi"}],"x":' + nested(100_000) + b"}",
        ),
        (
            "deep-object-1e5",
            b'{"model":"mock:echo","messages":[{"role":"user","content":"hi"}],"x":'
            + b'{"a":' * 100_000
            + b"1"
            + b"}" * 100_000
            + b"}",
        ),
        ("deep-unclosed-1e5", b'{"model":"mock:echo","x":' + b"[" * 100_000),
        (
            "deep-content-1e5",
            b'{"model":"mock:echo","messages":[{"role":"user","content":' + nested(100_000) + b"}]}",
        ),
        (
            "deep-tool-params-65",
            dumps(
                chat_body(
                    tools=[
                        {
                            "type": "function",
                            "function": {
                                "name": "f",
                                "parameters": json.loads(
                                    nested(65, b'{"a":', b"}").replace(b'{"a":}', b'{"a":{}}')
                                ),
                            },
                        }
                    ]
                )
            ),
        ),
        (
            "deep-message-extra-1e4",
            b'{"model":"mock:echo","messages":[{"role":"user","content":"hi","x":' + nested(10_000) + b"}]}",
        ),
        ("deep-embeddings-1e5", b'{"model":"mock:mock-embed","input":' + nested(100_000) + b"}"),
    ]:
        target = embed if label.startswith("deep-embeddings") else chat
        add(f"body/{label}", target(ctx, raw))
    # -- hostile model names, in chat, embeddings and headers of the answer
    for label, value in HOSTILE_MODELS:
        add(
            f"model/{label}-chat",
            chat(ctx, b'{"model":' + value + b',"messages":[{"role":"user","content":"hi"}]}'),
        )
        add(
            f"model/{label}-stream",
            chat(ctx, b'{"model":' + value + b',"stream":true,"messages":[{"role":"user","content":"hi"}]}'),
        )
        add(f"model/{label}-embeddings", embed(ctx, b'{"model":' + value + b',"input":"hi"}'))
    # -- hostile numbers in every bounded field
    for field_name in [
        "n",
        "max_tokens",
        "max_completion_tokens",
        "top_logprobs",
        "seed",
        "temperature",
        "top_p",
        "presence_penalty",
        "frequency_penalty",
    ]:
        for label, number in HOSTILE_NUMBERS:
            raw = (
                b'{"model":"mock:echo","messages":[{"role":"user","content":"hi"}],"logprobs":true,"'
                + field_name.encode()
                + b'":'
                + number
                + b"}"
            )
            add(f"numbers/{field_name}-{label}", chat(ctx, raw))
    for label, number in HOSTILE_NUMBERS:
        add(
            f"numbers/extra-field-{label}",
            chat(
                ctx, b'{"model":"mock:echo","messages":[{"role":"user","content":"hi"}],"x":' + number + b"}"
            ),
        )
        add(
            f"numbers/dimensions-{label}",
            embed(ctx, b'{"model":"mock:mock-embed","input":"hi","dimensions":' + number + b"}"),
        )
        add(
            f"numbers/token-input-{label}",
            embed(ctx, b'{"model":"mock:mock-embed","input":[[' + number + b"]]}"),
        )
        add(
            f"numbers/logit-bias-{label}",
            chat(
                ctx,
                b'{"model":"mock:echo","messages":[{"role":"user","content":"hi"}],"logit_bias":{"1":'
                + number
                + b"}}",
            ),
        )
    # -- sizes a caller chooses (README: Request bounds)
    msg = [{"role": "user", "content": "hi"}]
    tool = {"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}
    for label, payload in [
        ("n-1e9", chat_body(n=10**9)),
        ("n-128-stream", chat_body(n=128, stream=True)),
        ("max-tokens-1e6", chat_body(model="mock:any", max_tokens=10**6)),
        ("max-tokens-1e12", chat_body(max_tokens=10**12)),
        ("top-logprobs-1e9", chat_body(logprobs=True, top_logprobs=10**9)),
        ("stop-5000", chat_body(stop=[f"s{i}" for i in range(5000)])),
        ("stop-16", chat_body(stop=[f"s{i}" for i in range(16)])),
        ("stop-huge-string", chat_body(stop="s" * 5 * MiB)),
        (
            "tools-5000",
            chat_body(
                tools=[{**tool, "function": {**tool["function"], "name": f"f{i}"}} for i in range(5000)]
            ),
        ),
        (
            "tools-128-required",
            chat_body(
                tool_choice="required",
                tools=[{**tool, "function": {**tool["function"], "name": f"f{i}"}} for i in range(128)],
            ),
        ),
        ("functions-5000", chat_body(functions=[{"name": f"f{i}"} for i in range(5000)])),
        ("logit-bias-100k", chat_body(logit_bias={str(i): 1 for i in range(100_000)})),
        ("metadata-1000", chat_body(metadata={f"k{i}": "v" for i in range(1000)})),
        ("metadata-long-value", chat_body(metadata={"k": "v" * 10_000})),
        ("messages-20000", chat_body(messages=msg * 20_000)),
        ("messages-10000", chat_body(messages=msg * 10_000)),
        ("messages-empty", chat_body(messages=[])),
        ("content-10mb", chat_body(messages=[{"role": "user", "content": "a " * 5 * MiB}])),
        (
            "content-parts-100k",
            chat_body(messages=[{"role": "user", "content": [{"type": "text", "text": "a"}] * 100_000}]),
        ),
        (
            "wide-tool-schema",
            chat_body(
                tool_choice="required",
                tools=[
                    {
                        "type": "function",
                        "function": {
                            "name": "f",
                            "parameters": {
                                "type": "object",
                                "properties": {f"p{i}": {"type": "string"} for i in range(100_000)},
                            },
                        },
                    }
                ],
            ),
        ),
        (
            "deep-response-schema-64",
            chat_body(
                response_format={
                    "type": "json_schema",
                    "json_schema": {
                        "name": "s",
                        "schema": json.loads(
                            b'{"type":"object","properties":{"a":' * 31 + b'{"type":"string"}' + b"}}" * 31
                        ),
                    },
                }
            ),
        ),
        (
            "tool-choice-missing-tool",
            chat_body(tools=[tool], tool_choice={"type": "function", "function": {"name": "nope"}}),
        ),
        ("stream-options-junk", chat_body(stream=True, stream_options={"include_usage": "yes"})),
        ("stream-string", chat_body(stream="true")),
    ]:
        add(f"sizes/{label}", chat(ctx, payload), timeout=20)
    for label, payload in [
        ("dimensions-1e10", {"model": "mock:mock-embed", "input": "hi", "dimensions": 10**10}),
        ("dimensions-1e10-list", {"model": "mock:mock-embed", "input": ["hi"], "dimensions": 10**10}),
        ("dimensions-8192-string", {"model": "mock:mock-embed", "input": "hi", "dimensions": 8192}),
        ("dimensions-8192x2048", {"model": "mock:mock-embed", "input": ["x"] * 2048, "dimensions": 8192}),
        ("dimensions-zero", {"model": "mock:mock-embed", "input": "hi", "dimensions": 0}),
        ("inputs-5000", {"model": "mock:mock-embed", "input": ["x"] * 5000}),
        ("inputs-empty", {"model": "mock:mock-embed", "input": []}),
        ("input-empty-string", {"model": "mock:mock-embed", "input": ""}),
        ("input-tokens-2048x1000", {"model": "mock:mock-embed", "input": [[1] * 1000] * 2048}),
        ("input-mixed", {"model": "mock:mock-embed", "input": ["a", 1, [2]]}),
        ("input-object", {"model": "mock:mock-embed", "input": {"a": 1}}),
        ("encoding-junk", {"model": "mock:mock-embed", "input": "hi", "encoding_format": "\u0000"}),
        ("encoding-base64", {"model": "mock:mock-embed", "input": "hi", "encoding_format": "base64"}),
    ]:
        add(f"sizes/embeddings-{label}", embed(ctx, payload), timeout=20)
    # -- JSON schemas the mock fills in (tools with tool_choice, response_format): odd shapes
    for label, schema in [
        ("properties-int", {"type": "object", "properties": 1}),
        ("properties-list", {"type": "object", "properties": ["a"]}),
        ("properties-string", {"type": "object", "properties": "a"}),
        ("property-not-object", {"type": "object", "properties": {"a": 1}}),
        ("nested-properties-int", {"type": "object", "properties": {"a": {"properties": 5}}}),
        ("enum-int", {"enum": 5}),
        ("enum-object", {"enum": {"a": 1}}),
        ("enum-string", {"enum": "abc"}),
        ("enum-empty", {"type": "string", "enum": []}),
        ("items-list", {"type": "array", "items": [{"type": "string"}]}),
        ("items-int", {"type": "array", "items": 3}),
        ("type-list", {"type": ["string", "null"]}),
        ("type-int", {"type": 7}),
        ("ref-cycle", {"$ref": "#", "type": "object", "properties": {"a": {"$ref": "#"}}}),
    ]:
        tool_call = {"type": "function", "function": {"name": "f", "parameters": schema}}
        add(f"schema/tool-{label}", chat(ctx, chat_body(tools=[tool_call], tool_choice="required")))
        answer = {"type": "json_schema", "json_schema": {"name": "s", "schema": schema}}
        add(f"schema/response-format-{label}", chat(ctx, chat_body(response_format=answer)))
        add(
            f"schema/stream-tool-{label}",
            chat(ctx, chat_body(stream=True, tools=[tool_call], tool_choice="required")),
        )
    # -- pipelining
    add("pipeline/valid-then-garbage", get(ctx, b"/health") + b"GARBAGE\r\n\r\n")
    add("pipeline/two-chats", chat(ctx) + chat(ctx))
    add(
        "pipeline/length-smuggle",
        chat(
            ctx,
            body + b"GET /admin/keys HTTP/1.1\r\nHost: x\r\n\r\n",
            length=False,
            headers=[(b"Content-Length", b"%d" % len(body))],
        ),
    )
    # -- slow clients (an incomplete request, then silence): answered or closed in time, never held
    add("slow/nothing-sent", [b""], kind="incomplete")
    add("slow/partial-request-line", [b"POST /v1/chat/comp"], kind="incomplete")
    add("slow/headers-unterminated", [ok.split(b"\r\n\r\n", 1)[0] + b"\r\n"], kind="incomplete")
    add("slow/body-short", [ok[: len(ok) - len(body) // 2]], kind="incomplete")
    add(
        "slow/chunked-unterminated",
        [
            chat(
                ctx,
                b"%x\r\n" % len(body) + body + b"\r\n",
                length=False,
                headers=[(b"Transfer-Encoding", b"chunked")],
            )
        ],
        kind="incomplete",
    )
    add(
        "slow/length-larger",
        [chat(ctx, body, length=False, headers=[(b"Content-Length", b"%d" % (len(body) + 100))])],
        kind="incomplete",
    )
    trickle_headers: list[Part] = [b"POST /v1/chat/completions HTTP/1.1\r\n"]
    for i in range(60):
        trickle_headers += [0.5, b"X-Slow-%d: a\r\n" % i]
    add("slow/slowloris-headers", trickle_headers, kind="incomplete")
    trickle_body: list[Part] = [ok[: len(ok) - len(body)]]
    for byte in body:
        trickle_body += [0.5, bytes([byte])]
    add("slow/trickle-body", trickle_body, kind="incomplete")
    return cases


# --- seeded mutations of valid requests ---------------------------------------------------------------

INTERESTING_BYTES = [
    b"\x00",
    b"\r",
    b"\n",
    b"\r\n",
    b"\x80",
    b"\xff",
    b"\xfe",
    b" ",
    b"\t",
    b"%",
    b"%00",
    b"%ff",
    b":",
    b";",
    b",",
    b'"',
    b"\\",
    b"{",
    b"}",
    b"[",
    b"]",
    b"\x7f",
    b"\x1b",
]
INTERESTING_VALUES: list[Any] = [
    None, True, False, 0, -1, 1, 2**31, 2**63, 2**64, -(2**63) - 1, 10**30, 1e308, -1e308, 0.5, "", "a" * 10_000,
    "mock:echo", "mock:mock-embed", "mock:café中", "mock:a\r\nx-injected: 1", "\u0000", "\ud800", "\u202e", [], {}, [[]],
    [None], {"": None}, ["mock:echo"] * 100, "\x80\xff",
]  # fmt: skip
HOSTILE_HEADERS: list[tuple[bytes, bytes]] = [
    (b"x-request-id", b"\x80\xff"), (b"x-request-id", b"a" * 300), (b"x-request-id", b"req_ok-1"),
    (b"x-llmgate-timeout", b"nan"), (b"x-llmgate-timeout", b"-5"), (b"x-llmgate-timeout", b"3601"),
    (b"x-llmgate-timeout", b"0.001"), (b"x-llmgate-timeout", b"\xff"), (b"x-llmgate-fallbacks", b"a," * 20),
    (b"x-llmgate-fallbacks", b"mock:echo"), (b"x-llmgate-fallbacks", b"\x80"), (b"Authorization", b"Bearer \xff"),
    (b"Authorization", b"Bearer"), (b"Authorization", b"Basic x"), (b"x-api-key", b""), (b"Content-Length", b"-1"),
    (b"Content-Length", b"0"), (b"Transfer-Encoding", b"chunked"), (b"Expect", b"100-continue"),
    (b"Connection", b"close"), (b"Content-Type", b"text/plain"), (b"X-Big", b"b" * 70_000),
]  # fmt: skip


@dataclass
class Template:
    method: bytes
    path: bytes
    body: Any  # a JSON value, or None for no body


TEMPLATES = [
    Template(b"POST", b"/v1/chat/completions", chat_body()),
    Template(b"POST", b"/v1/chat/completions", chat_body(model="mock:any", stream=True, stream_options={"include_usage": True}, max_tokens=50, temperature=0.5, stop=["x"], n=1)),
    Template(b"POST", b"/v1/chat/completions", chat_body(tools=[{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}], tool_choice="required")),
    Template(b"POST", b"/v1/chat/completions", chat_body(response_format={"type": "json_schema", "json_schema": {"name": "s", "schema": {"type": "object", "properties": {"a": {"type": "integer"}}}}})),
    Template(b"POST", b"/v1/embeddings", {"model": "mock:mock-embed", "input": ["a", "b"], "dimensions": 8}),
    Template(b"GET", b"/v1/models", None),
    Template(b"GET", b"/v1/models/mock:echo", None),
    Template(b"GET", b"/api/models/search?q=gpt&min_context=1000", None),
    Template(b"GET", b"/health", None),
]  # fmt: skip


def _json_paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    paths = [prefix]
    if isinstance(value, dict):
        for key, child in value.items():
            paths += _json_paths(child, (*prefix, key))
    elif isinstance(value, list):
        for index, child in enumerate(value):
            paths += _json_paths(child, (*prefix, index))
    return paths


def _set_path(root: Any, path: tuple[Any, ...], value: Any) -> Any:
    if not path:
        return value
    node = root
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    return root


def _mutate_json(rng: random.Random, body: Any) -> Any:
    body = json.loads(json.dumps(body))
    for _ in range(rng.randint(1, 3)):
        paths = _json_paths(body)
        path = rng.choice(paths)
        op = rng.random()
        if op < 0.6:
            body = _set_path(body, path, copy.deepcopy(rng.choice(INTERESTING_VALUES)))
        elif op < 0.75 and isinstance(body, dict):
            body[
                rng.choice(
                    [
                        "model",
                        "n",
                        "max_tokens",
                        "dimensions",
                        "stop",
                        "tools",
                        "input",
                        "stream",
                        "x" * rng.randint(1, 300),
                    ]
                )
            ] = copy.deepcopy(rng.choice(INTERESTING_VALUES))
        elif op < 0.85 and path:
            parent = body
            for key in path[:-1]:
                parent = parent[key]
            with contextlib.suppress(KeyError, IndexError, TypeError):
                del parent[path[-1]]
        else:
            depth = rng.choice([2, 64, 65, 1000, 50_000])
            body = _set_path(
                body,
                path,
                json.loads("[" * min(depth, 900) + "]" * min(depth, 900))
                if depth < 1000
                else f"__deep_{depth}__",
            )
    return body


def _encode_body(rng: random.Random, body: Any) -> bytes:
    raw = json.dumps(body, ensure_ascii=rng.random() < 0.5, separators=(",", ":")).encode(
        "utf-8", "surrogatepass"
    )
    # Nesting too deep for json.dumps is spliced in as text, in place of its marker string.
    return re.sub(rb'"__deep_(\d+)__"', lambda found: nested(int(found.group(1))), raw)


def _mutate_bytes(rng: random.Random, data: bytes) -> bytes:
    if not data:
        return rng.choice(INTERESTING_BYTES)
    at = rng.randrange(len(data))
    op = rng.random()
    if op < 0.3:
        return data[:at] + bytes([rng.randrange(256)]) + data[at + 1 :]
    if op < 0.6:
        return data[:at] + rng.choice(INTERESTING_BYTES) * rng.choice([1, 1, 2, 100]) + data[at:]
    if op < 0.8:
        return data[:at] + data[at + rng.randint(1, 16) :]
    return data[:at] + data[at : at + rng.randint(1, 32)] * rng.randint(2, 50) + data[at:]


def mutation_case(ctx: Ctx, seed: int, index: int) -> Case:
    """Case ``index`` of the mutations for ``seed`` (the same numbers give the same bytes)."""
    rng = random.Random(f"{seed}:{index}")
    template = rng.choice(TEMPLATES)
    method, path = template.method, template.path
    headers: list[tuple[bytes, bytes]] = [(b"Host", ctx.host_header), *ctx.auth()]
    body = None if template.body is None else _encode_body(rng, template.body)
    notes = [f"template {method.decode()} {path.decode()}"]
    for _ in range(rng.randint(1, 3)):
        what = rng.random()
        if what < 0.35 and body is not None:
            body = _encode_body(rng, _mutate_json(rng, template.body))
            notes.append("json")
        elif what < 0.45 and body is not None:
            body = _mutate_bytes(rng, body)
            notes.append("body bytes")
        elif what < 0.6:
            path = _mutate_bytes(rng, path)
            notes.append("path")
        elif what < 0.65:
            method = rng.choice(
                [b"GET", b"POST", b"PUT", b"FOO", b"P\x00ST", b"\xff", method.lower(), method * 2]
            )
            notes.append("method")
        elif what < 0.85:
            headers.append(rng.choice(HOSTILE_HEADERS))
            notes.append("header added")
        elif what < 0.92 and headers:
            at = rng.randrange(len(headers))
            name, value = headers[at]
            headers[at] = (
                (_mutate_bytes(rng, name), value) if rng.random() < 0.4 else (name, _mutate_bytes(rng, value))
            )
            notes.append("header bytes")
        else:
            headers.append(headers[rng.randrange(len(headers))])
            notes.append("header duplicated")
    framing = rng.random()
    lines = [method + b" " + path + b" HTTP/1.1"] + [n + b": " + v for n, v in headers]
    if body is not None:
        lines.append(b"Content-Type: application/json")
        if framing < 0.8:
            lines.append(b"Content-Length: %d" % len(body))
        elif framing < 0.9:
            lines.append(b"Transfer-Encoding: chunked")
            body = chunked(body, [rng.randint(1, 64) for _ in range(rng.randint(1, 5))])
            notes.append("chunked")
        else:
            lines.append(b"Content-Length: %d" % max(0, len(body) + rng.choice([-10, -1, 1, 10])))
            notes.append("wrong length")
    data = b"\r\n".join(lines) + b"\r\n\r\n" + (body or b"")
    if rng.random() < 0.1:
        data = _mutate_bytes(rng, data)
        notes.append("raw bytes")
    kind = "answer" if framing_complete(data) else "incomplete"
    return Case(f"mutation/{index:04d}", [data], kind=kind, note=", ".join(notes))


def framing_complete(data: bytes) -> bool:
    """Whether a request is complete by a plain reading of its own framing (a server may read it otherwise)."""
    head, sep, body = data.partition(b"\r\n\r\n")
    if not sep:
        return False
    lengths, chunked_ = [], False
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        name = name.strip().lower()
        if name == b"content-length":
            lengths.append(value.strip())
        elif name == b"transfer-encoding" and b"chunked" in value.lower():
            chunked_ = True
    if chunked_:
        return b"0\r\n\r\n" in body
    if lengths and lengths[0].isdigit():
        return len(body) >= int(lengths[0])
    return True


def build_cases(ctx: Ctx, *, seed: int, count: int) -> list[Case]:
    """``count`` cases: the hand-written ones first (all of them when ``count`` allows), then mutations."""
    cases = hand_cases(ctx)
    if count <= len(cases):
        # A fixed, seeded sample that keeps every slow case and the baselines.
        keep = [c for c in cases if c.kind == "incomplete" or c.category == "baseline"]
        rest = [c for c in cases if c not in keep]
        picked = {c.name for c in random.Random(seed).sample(rest, max(0, count - len(keep)))}
        return [c for c in cases if c in keep or c.name in picked][:count]
    return cases + [mutation_case(ctx, seed, i) for i in range(count - len(cases))]


# --- running a case -----------------------------------------------------------------------------------


@dataclass
class Reply:
    status: int | None = None
    headers: list[tuple[bytes, bytes]] = field(default_factory=list)
    body: bytes = b""
    complete: bool = False


@dataclass
class Outcome:
    case: Case
    outcome: str  # "<status>", closed, reset, truncated, hang
    status: int | None
    content_type: str
    openai_error: bool | None
    seconds: float
    problems: list[str] = field(default_factory=list)
    body_head: str = ""

    def record(self) -> dict[str, Any]:
        return {
            "case": self.case.name,
            "kind": self.case.kind,
            "note": self.case.note,
            "outcome": self.outcome,
            "status": self.status,
            "content_type": self.content_type,
            "openai_error": self.openai_error,
            "seconds": round(self.seconds, 4),
            "problems": self.problems,
            "body_head": self.body_head,
            "bytes_sent": len(self.case.data),
        }


async def _read_head(reader: asyncio.StreamReader) -> tuple[int, list[tuple[bytes, bytes]]]:
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head[:-4].split(b"\r\n")
    parts = lines[0].split(b" ", 2)
    if len(parts) < 2 or not parts[0].startswith(b"HTTP/") or not parts[1].isdigit():
        raise ValueError(f"not an HTTP response: {lines[0][:80]!r}")
    headers = []
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        headers.append((name.strip().lower(), value.strip()))
    return int(parts[1]), headers


async def _read_body(reader: asyncio.StreamReader, headers: list[tuple[bytes, bytes]], status: int) -> bytes:
    values = dict(headers)
    kept = bytearray()
    if status in (204, 304):
        return b""
    if b"chunked" in values.get(b"transfer-encoding", b"").lower():
        while True:
            size = int((await reader.readuntil(b"\r\n")).split(b";")[0].strip(), 16)
            if size == 0:
                while (await reader.readuntil(b"\r\n")) != b"\r\n":
                    pass
                return bytes(kept)
            piece = await reader.readexactly(size + 2)
            if len(kept) < BODY_KEEP:
                kept += piece[:-2]
    if b"content-length" in values:
        left = int(values[b"content-length"])
        while left > 0:
            piece = await reader.readexactly(min(left, MiB))
            left -= len(piece)
            if len(kept) < BODY_KEEP:
                kept += piece
        return bytes(kept)
    while piece := await reader.read(MiB):  # until the server closes
        if len(kept) < BODY_KEEP:
            kept += piece
    return bytes(kept)


async def _read_reply(reader: asyncio.StreamReader, reply: Reply, *, head_request: bool) -> None:
    while True:
        reply.status, reply.headers = await _read_head(reader)
        if reply.status >= 200 or reply.status == 101:
            break  # 1xx (100 Continue) is followed by the real answer
    if reply.status != 101 and not head_request:
        reply.body = await _read_body(reader, reply.headers, reply.status)
    reply.complete = True


async def _write(writer: asyncio.StreamWriter, parts: list[Part]) -> None:
    with contextlib.suppress(OSError, RuntimeError):
        for part in parts:
            if isinstance(part, float):
                await asyncio.sleep(part)
            elif part:
                writer.write(part)
                await writer.drain()
        await asyncio.Event().wait()  # stay connected until the answer is in


def is_openai_error(body: bytes) -> bool:
    """``{"error": {"message": str, "type": str, "param": str|null, "code": str|null}}``."""
    try:
        data = json.loads(body)
    except ValueError:
        return False
    if not isinstance(data, dict) or set(data) != {"error"} or not isinstance(data["error"], dict):
        return False
    error = data["error"]
    return (
        {"message", "type", "param", "code"} <= set(error)
        and isinstance(error["message"], str)
        and isinstance(error["type"], str)
        and (error["param"] is None or isinstance(error["param"], str))
        and (error["code"] is None or isinstance(error["code"], str))
    )


async def exchange(host: str, port: int, case: Case, wait: float) -> tuple[str, Reply, float]:
    """Send the case and read one answer: (outcome, reply, seconds)."""
    started = time.monotonic()
    reply = Reply()
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port, limit=4 * MiB), 5)
    except (OSError, TimeoutError) as exc:
        return f"connect failed ({type(exc).__name__})", reply, time.monotonic() - started
    sender = asyncio.ensure_future(_write(writer, case.parts))
    outcome = ""
    try:
        async with asyncio.timeout(wait):
            await _read_reply(reader, reply, head_request=case.data.startswith(b"HEAD "))
    except TimeoutError:
        outcome = "hang"
    except asyncio.IncompleteReadError as exc:
        outcome = "closed" if reply.status is None and not exc.partial else "truncated"
    except asyncio.LimitOverrunError:
        outcome = "truncated"
    except (ConnectionResetError, BrokenPipeError):
        outcome = "reset" if reply.status is None else "truncated"
    except (ValueError, OSError):
        outcome = "truncated"
    finally:
        sender.cancel()
        with contextlib.suppress(BaseException):
            await sender
        writer.transport.abort()
    if reply.complete:
        outcome = str(reply.status)
    return outcome, reply, time.monotonic() - started


def judge(case: Case, outcome: str, reply: Reply, seconds: float) -> Outcome:
    """The problems with one answer."""
    headers = dict(reply.headers)
    content_type = headers.get(b"content-type", b"").decode("latin-1")
    problems: list[str] = []
    error_shape: bool | None = None
    status = reply.status if reply.complete else None
    if status is None:
        if outcome == "hang":
            problems.append("hang" if case.kind == "answer" else "hang: slow client held open")
        elif case.kind == "answer":
            problems.append(f"{outcome} without a response" if outcome in ("closed", "reset") else outcome)
        elif outcome == "truncated":
            problems.append("truncated response")
    else:
        if status >= 500 and not (case.expect and status in case.expect):
            problems.append(f"5xx ({status})")
        if status >= 400 and case.data.startswith(b"HEAD "):  # no body, by definition
            error_shape = content_type.startswith("application/json")
            if not error_shape:
                problems.append(f"error not OpenAI JSON ({content_type or 'no content-type'})")
        elif status >= 400:
            error_shape = content_type.startswith("application/json") and is_openai_error(reply.body)
            if not error_shape:
                problems.append(f"error not OpenAI JSON ({content_type or 'no content-type'})")
        if case.expect is not None and status not in case.expect and status < 500:
            problems.append(f"unexpected status {status} (expected {sorted(case.expect)})")
        for name, value in reply.headers:
            if name in INJECTED:
                problems.append(f"header injection: {name.decode()}")
            if any((b < 0x20 and b != 0x09) or b >= 0x7F for b in name + value):
                problems.append(f"unsafe bytes in response header {name[:40]!r}")
    return Outcome(
        case,
        outcome,
        status,
        content_type,
        error_shape,
        seconds,
        problems,
        reply.body[:300].decode("utf-8", "replace"),
    )


# --- the gateway under test ---------------------------------------------------------------------------


@dataclass
class Gateway:
    """The target: an address, and when this script started it, the process, its log and how to restart."""

    host: str
    port: int
    master_key: str | None
    proc: subprocess.Popen[bytes] | None = None
    log_path: Path | None = None
    restart: Callable[[], Gateway] | None = None
    log_offset: int = 0
    deaths: list[str] = field(default_factory=list)
    peak_rss_kib: int = 0

    def new_log(self) -> str:
        """What the gateway logged since the last call."""
        if self.log_path is None or not self.log_path.exists():
            return ""
        with self.log_path.open("rb") as log:
            log.seek(self.log_offset)
            text = log.read()
        self.log_offset += len(text)
        return text.decode("utf-8", "replace")

    def rss_kib(self) -> int:
        if self.proc is None:
            return 0
        with contextlib.suppress(OSError, ValueError):
            for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    rss = int(line.split()[1])
                    self.peak_rss_kib = max(self.peak_rss_kib, rss)
                    return rss
        return 0

    def exit_status(self) -> str | None:
        if self.proc is None or self.proc.poll() is None:
            return None
        code = self.proc.returncode
        return f"killed by {signal.Signals(-code).name}" if code < 0 else f"exited with {code}"


def health_sync(host: str, port: int, timeout: float = 1.0) -> bool:
    """``/health`` answers 200 (blocking: for start-up, outside the event loop)."""
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            sock.sendall(
                b"GET /health HTTP/1.1\r\nHost: %s:%d\r\nConnection: close\r\n\r\n" % (host.encode(), port)
            )
            return sock.recv(64).startswith(b"HTTP/1.1 200")
    except OSError:
        return False


async def health(host: str, port: int) -> bool:
    data = b"GET /health HTTP/1.1\r\nHost: %s:%d\r\nConnection: close\r\n\r\n" % (host.encode(), port)
    _, reply, _ = await exchange(host, port, Case("health", [data]), HEALTH_TIMEOUT)
    return reply.complete and reply.status == 200


@dataclass
class Run:
    """Results of one fuzzing run against one gateway."""

    label: str
    outcomes: list[Outcome] = field(default_factory=list)
    deaths: list[str] = field(default_factory=list)
    not_run: int = 0
    seconds: float = 0.0
    peak_rss_kib: int = 0


async def _after_case(gateway: Gateway, result: Outcome) -> Gateway:
    """``/health`` must answer; a dead gateway is a finding (and restarted, when this script owns it)."""
    logged = gateway.new_log()
    if "Traceback" in logged:
        result.problems.append(f"server logged a traceback: {traceback_summary(logged)}")
    alive = await health(gateway.host, gateway.port)
    if not alive:
        await asyncio.sleep(0.5)
        alive = await health(gateway.host, gateway.port)
    status = gateway.exit_status()
    rss = gateway.rss_kib()
    if rss and rss > 2 * 1024 * 1024:
        result.problems.append(f"gateway RSS {rss // 1024} MiB after the case")
    if alive and status is None:
        return gateway
    if status is not None:
        result.problems.append(f"gateway died: {status}")
        gateway.deaths.append(f"{result.case.name}: {status}")
    else:
        result.problems.append("/health did not answer after the case")
    if gateway.restart is not None:
        if gateway.proc is not None and gateway.proc.poll() is None:
            stop(gateway.proc)
        fresh = gateway.restart()
        fresh.deaths = gateway.deaths
        fresh.peak_rss_kib = gateway.peak_rss_kib
        return fresh
    return gateway


def traceback_summary(logged: str) -> str:
    """The exception and the innermost frame of the last traceback in a log: ``Error: text (at file:line)``."""
    lines = logged[logged.rindex("Traceback") :].splitlines()
    frames = [line.strip() for line in lines if line.strip().startswith('File "')]
    error = next((line.strip() for line in lines[1:] if line and not line[0].isspace()), "?")
    where = ""
    if frames:
        found = re.match(r'File "(?P<file>[^"]+)", line (?P<line>\d+), in (?P<func>\S+)', frames[-1])
        if found:
            short = "/".join(Path(found["file"]).parts[-2:])
            where = f" (at {short}:{found['line']} {found['func']})"
    return f"{error[:160]}{where}"


async def run_cases(
    gateway: Gateway,
    cases: Sequence[Case],
    *,
    answer_timeout: float,
    slow_timeout: float,
    seconds: float | None = None,
    verbose: bool = False,
    label: str = "",
) -> Run:
    """Every complete case in turn (``/health`` after each), then the slow ones concurrently."""
    run = Run(label or ("master key" if gateway.master_key else "open"))
    started = time.monotonic()
    deadline = None if seconds is None else started + seconds
    gateway.new_log()  # start-up output is not a case's
    slow: list[Case] = [case for case in cases if case.kind == "incomplete"]
    for case in cases:
        if case.kind != "answer":
            continue
        if deadline is not None and time.monotonic() > deadline:
            run.not_run += 1
            continue
        outcome, reply, took = await exchange(
            gateway.host, gateway.port, case, case.timeout or answer_timeout
        )
        result = judge(case, outcome, reply, took)
        if outcome == "hang":  # the server may read it as incomplete: judged among the slow cases
            slow.append(
                Case(
                    case.name,
                    case.parts,
                    "incomplete",
                    case.expect,
                    None,
                    case.note + " (hung within --timeout)",
                )
            )
        else:
            run.outcomes.append(result)
        gateway = await _after_case(gateway, result)
        if verbose:
            _show(result)
    if slow:
        # Slow cases start within the time given (or in the next second, when it is spent).
        late = None if deadline is None else max(deadline, time.monotonic() + 1)
        gateway = await _run_slow(
            gateway, slow, slow_timeout=slow_timeout, run=run, verbose=verbose, deadline=late
        )
    run.deaths = gateway.deaths
    run.peak_rss_kib = gateway.peak_rss_kib
    run.seconds = time.monotonic() - started
    return run


async def _run_slow(
    gateway: Gateway,
    cases: list[Case],
    *,
    slow_timeout: float,
    run: Run,
    verbose: bool,
    deadline: float | None,
) -> Gateway:
    """The incomplete requests, ``SLOW_CONCURRENCY`` at a time; none starts after ``deadline``."""
    semaphore = asyncio.Semaphore(SLOW_CONCURRENCY)

    async def one(case: Case) -> Outcome | None:
        async with semaphore:
            if deadline is not None and time.monotonic() > deadline:
                return None
            outcome, reply, took = await exchange(gateway.host, gateway.port, case, slow_timeout)
            return judge(case, outcome, reply, took)

    tasks = [asyncio.ensure_future(one(case)) for case in cases]
    await asyncio.sleep(min(2.0, slow_timeout / 2))
    alive_meanwhile = await health(gateway.host, gateway.port)
    results = [result for result in await asyncio.gather(*tasks) if result is not None]
    run.not_run += len(tasks) - len(results)
    if not alive_meanwhile:
        for result in results:
            result.problems.append("/health did not answer while the slow clients were connected")
    for result in results:
        run.outcomes.append(result)
        if verbose:
            _show(result)
    if results:
        gateway = await _after_case(gateway, results[-1])
    return gateway


def _show(result: Outcome) -> None:
    flag = "FAIL" if result.problems else "ok"
    print(
        f"{flag:4} {result.case.name:55} {result.outcome:10} {result.seconds * 1000:8.1f} ms  {'; '.join(result.problems)}"
    )


# --- processes ----------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def stop(proc: subprocess.Popen[Any], timeout: float = 10) -> None:
    """Terminate by PID, kill if it lingers."""
    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout)


def server_env(data_dir: Path, master_key: str | None, src: Path | None) -> dict[str, str]:
    """The environment without the variables that would configure the gateway under test otherwise."""
    scrubbed = {
        "OPENAI_API_KEY",
        "OPENAI_BASE_URL",
        "ANTHROPIC_API_KEY",
        "GEMINI_API_KEY",
        "GOOGLE_API_KEY",
        "COHERE_API_KEY",
        "AZURE_OPENAI_API_KEY",
        "AZURE_OPENAI_ENDPOINT",
        "HF_TOKEN",
        "OLLAMA_HOST",
    }
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in scrubbed and not k.startswith(("LLMGATE_", "LLM_PROXY_"))
    }
    env["LLMGATE_DATA_DIR"] = str(data_dir)
    if master_key:
        env["LLMGATE_MASTER_KEY"] = master_key
    if src is not None:
        env["PYTHONPATH"] = os.pathsep.join([str(src), *filter(None, [env.get("PYTHONPATH")])])
    return env


def llmgate_program() -> list[str]:
    for candidate in (Path(sys.executable).with_name("llmgate"), REPO / ".venv" / "bin" / "llmgate"):
        if candidate.exists():
            return [str(candidate)]
    return [sys.executable, "-c", "from llmgate.cli.main import main; main()"]


def start_gateway(
    workdir: Path,
    *,
    master_key: str | None,
    memory_limit: int,
    config: Path | None,
    src: Path | None,
    name: str,
) -> Gateway:
    """``llmgate serve`` on a free port, under an address-space limit; returns once /health answers."""
    workdir.mkdir(parents=True, exist_ok=True)
    # prlimit execs the command: the PID stays the gateway's, so its exit status is the gateway's own.
    limit = ["prlimit", f"--as={memory_limit}", "--"] if memory_limit and shutil.which("prlimit") else []
    if memory_limit and not limit:
        print("warning: prlimit not found: the gateway runs without a memory limit", file=sys.stderr)
    for _attempt in range(3):
        port = free_port()
        log_path = workdir / f"{name}-{port}.log"
        command = [
            *limit,
            *llmgate_program(),
            "serve",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--log-level",
            "warning",
        ]
        if config is not None:
            command += ["--config", str(config)]
        with log_path.open("wb") as out:
            proc = subprocess.Popen(
                command,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=server_env(workdir / "data", master_key, src),
                cwd=workdir,
            )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and proc.poll() is None:
            if health_sync("127.0.0.1", port):
                gateway = Gateway("127.0.0.1", port, master_key, proc, log_path)
                gateway.restart = lambda: start_gateway(
                    workdir,
                    master_key=master_key,
                    memory_limit=memory_limit,
                    config=config,
                    src=src,
                    name=name,
                )
                return gateway
            time.sleep(0.1)
        stop(proc)
        if "address already in use" not in log_path.read_text(errors="replace").lower():
            break
    raise RuntimeError(
        f"llmgate serve did not become healthy; its output:\n{log_path.read_text(errors='replace')[-3000:]}"
    )


# --- the report ---------------------------------------------------------------------------------------

FAILURE_COLUMNS = [
    "5xx",
    "hang",
    "no response",
    "non-JSON error",
    "unexpected status",
    "injection",
    "unsafe header",
    "traceback",
    "health",
    "died",
    "truncated",
]


def _columns(problem: str) -> str:
    for key, column in [
        ("5xx", "5xx"), ("hang", "hang"), ("without a response", "no response"), ("not OpenAI JSON", "non-JSON error"),
        ("unexpected status", "unexpected status"), ("injection", "injection"), ("unsafe bytes", "unsafe header"),
        ("traceback", "traceback"), ("/health", "health"), ("died", "died"), ("truncated", "truncated"),
    ]:  # fmt: skip
        if key in problem:
            return column
    return "other"


def signature(result: Outcome) -> str:
    """What makes two failures the same: the outcome, the kinds of problem and what the answer said."""
    kinds = sorted({_columns(p) for p in result.problems})
    # One cause, one group: a traceback is known by where it was raised, whatever the message says.
    trace = next((p.split("traceback: ", 1)[1] for p in result.problems if "traceback: " in p), "")
    if " (at " in trace:
        trace = trace.split(":", 1)[0] + " at " + trace.rsplit(" (at ", 1)[1].rstrip(")")
    detail = trace or (result.body_head[:48] if result.status and result.status >= 400 else "")
    return f"{result.outcome} | {', '.join(kinds)} | {detail or result.content_type or '-'}"


def printf_literal(data: bytes) -> str:
    """``data`` as a single-quoted bash ``printf`` format that writes exactly those bytes."""
    text = []
    for byte in data:
        char = chr(byte)
        if 0x20 <= byte < 0x7F and char not in "'\\%":
            text.append(char)
        else:
            text.append({0x0D: "\\r", 0x0A: "\\n"}.get(byte, f"\\x{byte:02x}"))
    return "'" + "".join(text) + "'"


def reproducer(result: Outcome, host: str, port: int, out: Path | None, *, index: int, seed: int) -> str:
    """A bash line that sends the case's bytes and prints the answer; big ones go to a file."""
    data = result.case.data
    if result.case.name.startswith("mutation/"):
        hint = f"# or: bench/fuzz_socket.py --only {result.case.name} --seed {seed} -v"
    else:
        hint = f"# or: bench/fuzz_socket.py --only '{result.case.name}' -v"
    if len(data) <= 800:
        send = f"printf {printf_literal(data)}"
    elif out is not None:
        path = out / f"case-{index:04d}.bin"
        path.write_bytes(data)
        send = f"cat {path}"
    else:
        return hint
    return f"(exec 3<>/dev/tcp/{host}/{port}; {send} >&3; timeout 15 cat <&3)\n{hint}"


def summarize(
    runs: Sequence[Run],
    host_ports: dict[str, tuple[str, int]],
    out: Path | None,
    *,
    seed: int,
    max_repro: int = 40,
) -> tuple[str, int]:
    """The report and the number of failing cases."""
    lines: list[str] = []
    failures: list[tuple[Run, Outcome]] = []
    for run in runs:
        by_outcome = Counter(result.outcome for result in run.outcomes)
        failing = [r for r in run.outcomes if r.problems]
        failures += [(run, r) for r in failing]
        columns = Counter(_columns(p) for r in failing for p in {_columns(x): x for x in r.problems}.values())
        lines.append(
            f"== {run.label}: {len(run.outcomes)} cases in {run.seconds:.1f} s ({run.not_run} not run: --seconds), peak RSS {run.peak_rss_kib // 1024} MiB"
        )
        lines.append("   outcomes: " + ", ".join(f"{k}: {v}" for k, v in sorted(by_outcome.items())))
        lines.append(
            f"   failing cases: {len(failing)}   "
            + "  ".join(f"{c}: {columns.get(c, 0)}" for c in FAILURE_COLUMNS if columns.get(c))
        )
        if run.deaths:
            lines.append("   gateway deaths: " + "; ".join(run.deaths))
        lines.append("")
        cats = sorted({r.case.category for r in run.outcomes})
        lines.append(
            f"   {'category':18} {'cases':>6} {'fail':>5} {'5xx':>4} {'hang':>5} {'close':>6} {'nonjson':>8}  statuses"
        )
        for cat in cats:
            rs = [r for r in run.outcomes if r.case.category == cat]
            statuses = Counter(r.outcome for r in rs)

            def count(column: str, rs: list[Outcome] = rs) -> int:
                return sum(1 for r in rs if any(_columns(p) == column for p in r.problems))

            lines.append(
                f"   {cat:18} {len(rs):6} {sum(1 for r in rs if r.problems):5} {count('5xx'):4} {count('hang'):5} {count('no response'):6} {count('non-JSON error'):8}  "
                + " ".join(f"{k}x{v}" for k, v in sorted(statuses.items()))
            )
        lines.append("")
    groups: dict[str, list[tuple[Run, Outcome]]] = {}
    for run, result in failures:
        groups.setdefault(run.label + " | " + signature(result), []).append((run, result))
    lines.append(f"== {len(groups)} distinct failures ({len(failures)} failing cases)")
    for index, (sig, members) in enumerate(sorted(groups.items(), key=lambda kv: -len(kv[1]))):
        run = members[0][0]
        host, port = host_ports[run.label]
        lines.append(f"-- [{len(members)} cases] {sig}")
        by_category = Counter(m.case.category for _, m in members)
        lines.append("   categories: " + ", ".join(f"{c} x{n}" for c, n in by_category.most_common()))
        # Hand-written cases explain themselves better than mutations: one of each category first.
        shown: dict[str, Outcome] = {}
        for _, member in members:
            shown.setdefault(member.case.category, member)
        examples = sorted(shown.values(), key=lambda m: m.case.category == "mutation")[:REPRODUCED]
        for number, example in enumerate(examples):
            lines.append(
                f"   e.g. {example.case.name} ({example.case.note or example.case.kind}): {example.outcome}, "
                f"{example.content_type or '-'}, {example.seconds * 1000:.0f} ms; {'; '.join(example.problems)}"
            )
            if example.body_head and number == 0:
                lines.append(f"   body: {example.body_head[:160]!r}")
            if index < max_repro:
                text = reproducer(example, host, port, out, index=index * 10 + number, seed=seed)
                lines.append("   " + text.replace("\n", "\n   "))
    return "\n".join(lines), len(failures)


# --- command line -------------------------------------------------------------------------------------


async def replay(data: bytes, host: str, port: int, wait: float) -> int:
    case = Case("replay", [data])
    outcome, reply, took = await exchange(host, port, case, wait)
    result = judge(case, outcome, reply, took)
    print(f"outcome: {outcome} in {took * 1000:.1f} ms; problems: {result.problems or 'none'}")
    for name, value in reply.headers:
        print(f"{name.decode('latin-1')}: {value.decode('latin-1')}")
    print(reply.body[:4000].decode("utf-8", "replace"))
    return 1 if result.problems else 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--url", help="a running gateway (default: start one)")
    parser.add_argument(
        "--master-key",
        default=None,
        help=f"the gateway's master key (started gateways: {DEFAULT_MASTER_KEY})",
    )
    parser.add_argument(
        "--auth",
        choices=["open", "master", "both"],
        default="both",
        help="which gateways to start (default both)",
    )
    parser.add_argument(
        "--cases", type=int, default=40_000, help="cases per gateway (hand-written first, then mutations)"
    )
    parser.add_argument(
        "--seconds", type=float, default=180, help="time for the complete cases, split over the gateways"
    )
    parser.add_argument("--seed", type=int, default=1, help="seed of the mutations and of the sample")
    parser.add_argument(
        "--timeout", type=float, default=5.0, help="seconds a complete request may wait for its answer"
    )
    parser.add_argument(
        "--slow-timeout", type=float, default=15.0, help="seconds an incomplete request may be held"
    )
    parser.add_argument(
        "--memory-limit",
        type=int,
        default=4_000_000_000,
        help="address-space limit of a started gateway (0: none)",
    )
    parser.add_argument("--config", type=Path, help="config file for the started gateways")
    parser.add_argument(
        "--src", type=Path, help="run the started gateways from this source tree (put first on PYTHONPATH)"
    )
    parser.add_argument(
        "--only", action="append", help="run only the case(s) with this name (or a category/ prefix)"
    )
    parser.add_argument("--replay", type=Path, help="send the bytes of this file once and print the answer")
    parser.add_argument(
        "--out", type=Path, help="results directory (default bench/results/fuzz-socket-<time>)"
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="print every case")
    args = parser.parse_args(argv)

    if args.replay:
        if not args.url:
            parser.error("--replay needs --url")
        parts = urlsplit(args.url)
        return asyncio.run(
            replay(args.replay, parts.hostname or "127.0.0.1", parts.port or 80, args.slow_timeout)
        )
    out = args.out or HERE / "results" / f"fuzz-socket-{dt.datetime.now():%Y%m%d-%H%M%S}"
    out.mkdir(parents=True, exist_ok=True)
    modes = ["open", "master"] if args.auth == "both" else [args.auth]
    if args.url:
        modes = ["master" if args.master_key else "open"]
    runs: list[Run] = []
    where: dict[str, tuple[str, int]] = {}
    workdir = Path(tempfile.mkdtemp(prefix="llmgate-fuzz-socket-"))
    try:
        for mode in modes:
            key = (args.master_key or DEFAULT_MASTER_KEY) if mode == "master" else None
            if args.url:
                parts = urlsplit(args.url)
                gateway = Gateway(parts.hostname or "127.0.0.1", parts.port or 80, key)
            else:
                gateway = start_gateway(
                    workdir / mode,
                    master_key=key,
                    memory_limit=args.memory_limit,
                    config=args.config,
                    src=args.src,
                    name=mode,
                )
            try:
                ctx = Ctx(gateway.host, gateway.port, key)
                cases = build_cases(
                    ctx,
                    seed=args.seed,
                    count=max(args.cases, len(hand_cases(ctx))) if args.only else args.cases,
                )
                if args.only:
                    cases = [
                        c
                        for c in cases
                        if any(c.name == o or (o.endswith("/") and c.name.startswith(o)) for o in args.only)
                    ]
                print(
                    f"{mode}: {len(cases)} cases against http://{gateway.host}:{gateway.port} (seed {args.seed})",
                    file=sys.stderr,
                    flush=True,
                )
                run = asyncio.run(
                    run_cases(
                        gateway,
                        cases,
                        answer_timeout=args.timeout,
                        slow_timeout=args.slow_timeout,
                        seconds=args.seconds / len(modes),
                        verbose=args.verbose,
                        label=mode,
                    )
                )
                runs.append(run)
                # Reproducers name a gateway one can start by hand, when this one was the script's own.
                where[run.label] = (gateway.host, gateway.port) if args.url else ("127.0.0.1", 8000)
                with (out / "results.jsonl").open("a") as results:
                    for result in run.outcomes:
                        results.write(json.dumps({"run": run.label, **result.record()}) + "\n")
            finally:
                if gateway.proc is not None:
                    stop(gateway.proc)
                    if gateway.log_path is not None:
                        shutil.copy(gateway.log_path, out / f"gateway-{mode}.log")
    except RuntimeError as exc:
        print(f"could not run: {exc}", file=sys.stderr)
        return 2
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    report, failing = summarize(runs, where, out, seed=args.seed)
    if not args.url:
        report = (
            "Reproducers assume `llmgate serve --port 8000` (no config; for the master-key run with "
            f"LLMGATE_MASTER_KEY={args.master_key or DEFAULT_MASTER_KEY}).\n\n" + report
        )
    (out / "summary.txt").write_text(report + "\n")
    print(report)
    print(f"\nresults in {out}")
    return 1 if failing else 0


if __name__ == "__main__":
    sys.exit(main())
