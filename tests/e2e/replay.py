"""A replay upstream for the end-to-end tests: answers with real recorded provider responses.

    python tests/e2e/replay.py --port 0 --recordings FILE1 FILE2 ...

It prints ``REPLAY READY <port>`` once it listens. The files are the recordings in
``/work/shared/provider-recordings`` (see its INDEX.md): ``request {method, url_path, body}`` and
``response {status, headers, body | body_text + stream_format}``.

Each incoming request is answered with the one loaded recording that matches it:

1. same method and path (the query string is ignored: ``?api-version=``, ``?alt=sse``, ``?beta=true``; the
   path keeps Gemini's ``:generateContent`` / ``:streamGenerateContent`` action);
2. same stream flag (``"stream": true`` in the body, Gemini's streaming action, Ollama's default of
   streaming when ``stream`` is left out);
3. same last user message text (``messages``, Gemini ``contents``, Cohere v1 ``message``, embedding
   inputs), then, if still several, the same conversation length.

If exactly one recording shares method, path and stream flag, it is used even when the text differs. No
match, or a tie, is answered ``599`` with an explanation (and logged), so a test fails loudly.

The response carries the recorded status, ``content-type`` and rate-limit / ``retry-after`` headers (not
the recorded ``content-length``/``transfer-encoding``/``content-encoding``: bodies here are decoded). Stream
bodies (``body_text``) are written in irregular pieces with tiny pauses, so event framing across reads --
even a UTF-8 character split between two reads -- is exercised.

``GET /_log`` lists every request received (method, path, query, headers, body, matched recording);
``DELETE /_log`` clears it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
from pathlib import Path
from typing import Any
from urllib.parse import unquote

from aiohttp import web

PIECE_PAUSE_S = 0.002
MAX_PIECES = 48
MIN_PIECE = 5
NO_MATCH_STATUS = 599
_FORWARDED_HEADER_PREFIXES = ("x-ratelimit-", "anthropic-ratelimit-", "ratelimit-", "x-trial-endpoint-call-")
_FORWARDED_HEADERS = frozenset({"content-type", "retry-after", "retry-after-ms", "x-should-retry"})

RECORDINGS_KEY: web.AppKey[list[dict[str, Any]]] = web.AppKey("recordings", list)
LOG_KEY: web.AppKey[list[dict[str, Any]]] = web.AppKey("log", list)


# --- what a request says -----------------------------------------------------------------------------------


def _text_of(content: Any) -> str:
    """The text of a message's content: a string, or the text parts of a list of parts."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(
            part.get("text") or "" for part in content if isinstance(part, dict) and "text" in part
        )
    return ""


def last_user_text(body: Any) -> str | None:
    """The last user message's text (chat), or the joined input texts (embeddings)."""
    if not isinstance(body, dict):
        return None
    if isinstance(body.get("messages"), list):
        for message in reversed(body["messages"]):
            if isinstance(message, dict) and message.get("role") == "user":
                return _text_of(message.get("content"))
        return ""
    if isinstance(body.get("contents"), list):  # Gemini
        for content in reversed(body["contents"]):
            if isinstance(content, dict) and content.get("role", "user") == "user":
                return _text_of(content.get("parts"))
        return ""
    if isinstance(body.get("message"), str):  # Cohere v1
        return str(body["message"])
    return _embedding_text(body)


def _embedding_text(body: dict[str, Any]) -> str | None:
    """The joined input texts of an embeddings request."""
    if isinstance(body.get("requests"), list):  # Gemini batchEmbedContents
        return "\n".join(_text_of((item.get("content") or {}).get("parts")) for item in body["requests"])
    if isinstance(body.get("content"), dict):  # Gemini embedContent
        return _text_of(body["content"].get("parts"))
    for key in ("input", "texts"):  # OpenAI / Ollama / Cohere embeddings
        value = body.get(key)
        if isinstance(value, str):
            return value
        if isinstance(value, list):
            return "\n".join(str(item) for item in value)
    return None


def conversation_length(body: Any) -> int:
    if not isinstance(body, dict):
        return 0
    for key in ("messages", "contents"):
        if isinstance(body.get(key), list):
            return len(body[key])
    return 0


def is_stream(path: str, body: Any) -> bool:
    """Whether a request asks for a streamed answer."""
    if ":streamGenerateContent" in path:
        return True
    if ":generateContent" in path:
        return False
    flag = body.get("stream") if isinstance(body, dict) else None
    if flag is None:  # Ollama's native chat/generate stream unless told otherwise
        return path.endswith(("/api/chat", "/api/generate"))
    return bool(flag)


def split_path(url_path: str) -> tuple[str, str]:
    path, _, query = url_path.partition("?")
    return unquote(path), query


# --- recordings ----------------------------------------------------------------------------------------------


def load(paths: list[str]) -> list[dict[str, Any]]:
    recordings = []
    for name in paths:
        data = json.loads(Path(name).read_text())
        request = data.get("request") or {}
        if not request.get("url_path") or not request.get("method"):
            raise SystemExit(f"{name}: the recording has no request method/url_path to match on")
        path, _ = split_path(request["url_path"])
        body = request.get("body")
        recordings.append(
            {
                "name": Path(name).name,
                "method": request["method"].upper(),
                "path": path,
                "stream": is_stream(path, body),
                "text": last_user_text(body),
                "length": conversation_length(body),
                "response": data["response"],
            }
        )
    return recordings


def choose(
    recordings: list[dict[str, Any]], method: str, path: str, body: Any
) -> tuple[dict[str, Any] | None, str]:
    """The recording for a request, or ``None`` and why not."""
    stream = is_stream(path, body)
    same_route = [
        r for r in recordings if r["method"] == method and r["path"] == path and r["stream"] == stream
    ]
    if not same_route:
        return None, f"no recording for {method} {path} (stream={stream})"
    text = last_user_text(body)
    same_text = [r for r in same_route if r["text"] == text]
    if len(same_text) > 1:
        same_text = [r for r in same_text if r["length"] == conversation_length(body)] or same_text
    if len(same_text) == 1:
        return same_text[0], ""
    if not same_text and len(same_route) == 1:
        return same_route[0], ""
    names = [r["name"] for r in (same_text or same_route)]
    return None, f"{len(names)} recordings could answer {method} {path} with text {text!r}: {names}"


# --- serving -------------------------------------------------------------------------------------------------


def response_headers(recorded: dict[str, Any]) -> dict[str, str]:
    headers: dict[str, str] = {}
    for name, value in (recorded.get("headers") or {}).items():
        lower = name.lower()
        if lower in _FORWARDED_HEADERS or lower.startswith(_FORWARDED_HEADER_PREFIXES):
            headers[lower] = value[-1] if isinstance(value, list) else str(value)
    return headers


def pieces(data: bytes) -> list[bytes]:
    """``data`` cut at irregular offsets (never aligned to events), at most ``MAX_PIECES`` of them."""
    if not data:
        return []
    base = max(MIN_PIECE, len(data) // MAX_PIECES + 1)
    sizes = (base, base // 2 + 1, base + base // 3 + 1)  # irregular, so cuts fall anywhere
    out, start, turn = [], 0, 0
    while start < len(data):
        size = sizes[turn % len(sizes)]
        out.append(data[start : start + size])
        start += size
        turn += 1
    return out


async def answer(request: web.Request) -> web.StreamResponse:
    raw = await request.read()
    try:
        body: Any = json.loads(raw) if raw else None
    except ValueError:
        body = raw.decode("utf-8", "replace")
    path, query = split_path(request.raw_path)
    method = request.method.upper()
    recording, why = choose(request.app[RECORDINGS_KEY], method, path, body)
    request.app[LOG_KEY].append(
        {
            "method": method,
            "path": path,
            "query": query,
            "headers": dict(request.headers),
            "body": body,
            "recording": recording["name"] if recording else None,
            "error": why or None,
        }
    )
    if recording is None:
        return web.json_response({"error": {"message": f"replay: {why}"}}, status=NO_MATCH_STATUS)
    recorded = recording["response"]
    headers = response_headers(recorded)
    if "body_text" not in recorded:
        value = recorded.get("body")
        text = value if isinstance(value, str) else json.dumps(value)
        headers.setdefault("content-type", "application/json")
        return web.Response(status=recorded["status"], body=text.encode(), headers=headers)
    response = web.StreamResponse(status=recorded["status"], headers=headers)
    await response.prepare(request)
    for piece in pieces(recorded["body_text"].encode()):
        await response.write(piece)
        await asyncio.sleep(PIECE_PAUSE_S)
    await response.write_eof()
    return response


async def get_log(request: web.Request) -> web.StreamResponse:
    return web.json_response({"requests": request.app[LOG_KEY]})


async def clear_log(request: web.Request) -> web.StreamResponse:
    request.app[LOG_KEY].clear()
    return web.json_response({"cleared": True})


def build_app(recordings: list[dict[str, Any]]) -> web.Application:
    app = web.Application(client_max_size=64 * 1024 * 1024)
    app[RECORDINGS_KEY] = recordings
    app[LOG_KEY] = []
    app.router.add_get("/_log", get_log)
    app.router.add_delete("/_log", clear_log)
    app.router.add_route("*", "/{tail:.*}", answer)
    return app


async def run(host: str, port: int, recordings: list[dict[str, Any]]) -> None:
    runner = web.AppRunner(build_app(recordings), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    print(f"REPLAY READY {runner.addresses[0][1]}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        await runner.cleanup()


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port (printed when ready)")
    parser.add_argument("--recordings", nargs="+", required=True, help="recording JSON files")
    args = parser.parse_args()
    asyncio.run(run(args.host, args.port, load(args.recordings)))


if __name__ == "__main__":
    main()
