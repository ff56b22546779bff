#!/usr/bin/env python3
"""OpenAPI-driven fuzzing of llmgate with schemathesis, from OpenAI's official spec.

    .venv/bin/python bench/fuzz_openapi.py                       # both auth modes, ~3 minutes
    .venv/bin/python bench/fuzz_openapi.py --seconds 600 --max-examples 500 --seed 7
    .venv/bin/python bench/fuzz_openapi.py --url http://127.0.0.1:8000 [--master-key KEY]

schemathesis is in the project's ``dev`` extra (``pip install -e ".[dev]"``; on its own:
``.venv/bin/pip install schemathesis``). The spec is ``../shared/specs/openai-openapi.yaml`` (``--spec``),
restricted to what the gateway serves: ``POST /chat/completions``, ``POST /responses``,
``POST /completions``, ``POST /embeddings``, ``GET /models``, ``GET /models/{model}``, under ``/v1``.

Without ``--url`` it starts ``llmgate serve`` itself on a free port (no config: the built-in ``mock``
provider, open mode on 127.0.0.1; the ``master`` run sets ``LLMGATE_MASTER_KEY`` and sends it as
``Authorization: Bearer``, except for one case in five, which keeps the spec's generated credentials),
under an address-space limit (``--memory-limit``), with a data directory of its own. A gateway that
exits is a finding, and is restarted.

Cases: schemathesis' positive (valid by the spec) and negative (invalid by the spec) generation, for each
operation; payloads from the spec name real OpenAI models, so each is also sent with ``model`` forced to a
gateway name (``mock:echo``, ``mock:mock-embed``) and to hostile ones (``mock:café中``, CR/LF, NUL, 300
characters, non-strings, ...). Each is sent over a plain socket exactly as built (``bench/fuzz_socket.py``
does the exchange), so that a generated header that an HTTP client library would refuse still goes out.

Checks: no 5xx; every 4xx an OpenAI error body ``{"error": {"message", "type", "param", "code"}}`` as JSON;
no hang (``--timeout`` per request) and no connection closed without an answer; statuses that make sense
(an operation's documented set; no 401 in open mode or with the right key; no 404 for the gateway's own
model); 200s of the right shape (and, reported apart as information, conforming to OpenAI's response
schema); ``/health`` still answering after any failure; no traceback in the gateway's log.

Bounded by ``--max-examples`` (per operation, generation mode and model variant) and ``--seconds`` (all of
it). At the end: cases per operation, statuses, 5xx, hangs, closes, shape violations, and each distinct
failure with curl lines that reproduce its first cases (the exact bytes are in ``--out``, default
``bench/results/fuzz-openapi-<time>/``, for ``bench/fuzz_socket.py --replay``). Exit status: 0 no failure,
1 failures, 2 could not run.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import shutil
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode, urlsplit

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import fuzz_socket as raw  # noqa: E402 (the sibling script: the exchange and the gateway process)

SPEC = HERE.parent.parent / "shared" / "specs" / "openai-openapi.yaml"
OPERATIONS = (
    "POST /chat/completions",
    "POST /responses",
    "POST /completions",
    "POST /embeddings",
    "GET /models",
    "GET /models/{model}",
)
GATEWAY_MODEL = {
    "POST /chat/completions": "mock:echo",
    "POST /responses": "mock:echo",
    "POST /completions": "mock:echo",
    "POST /embeddings": "mock:mock-embed",
    "GET /models/{model}": "mock:echo",
}
HOSTILE_MODELS: list[Any] = [
    "mock:café中",
    "mock:a\r\nx-injected: 1",
    "mock:\x00",
    "mock:" + "a" * 300,
    "",
    "mock:",
    "no-such-model",
    "mock:\u202eevil",
    "mock:%0d%0ax-injected:%201",
    "../../etc/passwd",
    "mock:echo\t",
    "mock:\x7f\x85",
    "mock:\ud800",
    42,
    None,
    ["mock:echo"],
    {"name": "mock:echo"},
]
ALLOWED = {
    "POST /chat/completions": frozenset({200, 400, 401, 404, 413}),
    "POST /responses": frozenset({200, 400, 401, 404, 413}),
    "POST /completions": frozenset({200, 400, 401, 404, 413}),
    "POST /embeddings": frozenset({200, 400, 401, 404, 413}),
    "GET /models": frozenset({200, 401}),
    "GET /models/{model}": frozenset({200, 400, 401, 404}),
}
# What ends a 200 stream of each operation: its last event, or an error event.
STREAM_ENDS = {
    "POST /chat/completions": (b"data: [DONE]", b'data: {"error"'),
    "POST /completions": (b"data: [DONE]", b'data: {"error"'),
    "POST /responses": (b"event: response.completed", b"event: response.incomplete", b"event: error"),
}
DROPPED_HEADERS = {"x-schemathesis-testcaseid", "accept-encoding", "connection", "content-length", "host"}
ROUNDS = 4  # passes over the cells that ran out of time, while time is left
MAX_REPRODUCED = 3  # curl lines per distinct failure
CONFORMANCE_SHOWN = 8


class TimeUp(BaseException):
    """Raised inside a hypothesis test to end it when its time is spent (BaseException: not a failure)."""


@dataclass
class Sent:
    """One request as it went out."""

    operation: str
    mode: str
    variant: str
    method: str
    url: str
    headers: list[tuple[bytes, bytes]]
    body: bytes | None
    data: bytes  # the whole request, as written to the socket
    stream: bool = False
    right_key: bool = False


@dataclass
class Result:
    sent: Sent
    outcome: str
    status: int | None
    content_type: str
    seconds: float
    problems: list[str] = field(default_factory=list)
    conformance: str | None = None
    body_head: str = ""
    error_code: str | None = None
    error_param: str | None = None


@dataclass
class Report:
    label: str
    base_url: str
    results: list[Result] = field(default_factory=list)
    skipped: Counter[str] = field(default_factory=Counter)
    deaths: list[str] = field(default_factory=list)
    seconds: float = 0.0
    open_mode: bool = True

    @property
    def failures(self) -> list[Result]:
        return [r for r in self.results if r.problems]


# --- building requests --------------------------------------------------------------------------------


def _header_bytes(value: Any) -> bytes:
    text = str(value)
    try:
        return text.encode("latin-1")
    except UnicodeEncodeError:
        return text.encode("utf-8", "surrogatepass")


def _encode_body(kwargs: dict[str, Any]) -> bytes | None:
    if "json" in kwargs:
        return json.dumps(kwargs["json"]).encode()  # ensure_ascii: lone surrogates go out as \\udXXX
    data = kwargs.get("data")
    if data is None:
        return None
    return data if isinstance(data, bytes) else str(data).encode("utf-8", "surrogatepass")


def build(
    case: Any, *, base_url: str, operation: str, mode: str, variant: str, index: int, master_key: str | None
) -> Sent:
    """The request for a generated case, with the model forced as ``variant`` says."""
    model: Any = None
    if variant == "gateway":
        model = GATEWAY_MODEL[operation]
    elif variant == "hostile":
        model = HOSTILE_MODELS[index % len(HOSTILE_MODELS)]
    if variant != "spec":
        if operation == "GET /models/{model}":
            case.path_parameters = {
                **(case.path_parameters or {}),
                "model": quote(str(model), safe=":", errors="surrogatepass"),
            }
        elif isinstance(case.body, dict):
            case.body["model"] = model
    kwargs = case.as_transport_kwargs(base_url=base_url)
    method = str(kwargs["method"]).upper()
    url = str(kwargs["url"])
    params = kwargs.get("params") or {}
    if params:
        url += ("&" if "?" in url else "?") + urlencode(params, doseq=True)
    parts = urlsplit(url)
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    right_key = master_key is not None and index % 5 != 0
    headers: list[tuple[bytes, bytes]] = [(b"Host", parts.netloc.encode())]
    for name, value in (kwargs.get("headers") or {}).items():
        if name.lower() in DROPPED_HEADERS or (right_key and name.lower() == "authorization"):
            continue
        headers.append((_header_bytes(name), _header_bytes(value)))
    if right_key:
        assert master_key is not None
        headers.append((b"Authorization", b"Bearer " + master_key.encode()))
    for name, value in (kwargs.get("cookies") or {}).items():
        headers.append((b"Cookie", _header_bytes(f"{name}={value}")))
    body = _encode_body(kwargs)
    if body is not None:
        headers.append((b"Content-Length", str(len(body)).encode()))
    head = method.encode() + b" " + target.encode("utf-8", "surrogatepass") + b" HTTP/1.1\r\n"
    head += b"".join(name + b": " + value + b"\r\n" for name, value in headers)
    stream = isinstance(case.body, dict) and case.body.get("stream") is True
    return Sent(
        operation,
        mode,
        variant,
        method,
        url,
        headers,
        body,
        head + b"\r\n" + (body or b""),
        stream,
        right_key,
    )


# --- checking answers ---------------------------------------------------------------------------------


def _json(body: bytes) -> Any:
    try:
        return json.loads(body)
    except ValueError:
        return None


def judge(sent: Sent, outcome: str, reply: raw.Reply, seconds: float, *, open_mode: bool) -> Result:
    headers = dict(reply.headers)
    content_type = headers.get(b"content-type", b"").decode("latin-1")
    status = reply.status if reply.complete else None
    result = Result(
        sent, outcome, status, content_type, seconds, body_head=reply.body[:300].decode("utf-8", "replace")
    )
    problems = result.problems
    if status is None:
        problems.append("hang" if outcome == "hang" else f"{outcome} without a response")
        return result
    data = _json(reply.body) if content_type.startswith("application/json") else None
    if isinstance(data, dict) and isinstance(data.get("error"), dict):
        code, param = data["error"].get("code"), data["error"].get("param")
        result.error_code = code if isinstance(code, str) else None
        result.error_param = param if isinstance(param, str) else None
    if status >= 500:
        problems.append(f"5xx ({status})")
    elif status >= 400 and not (
        content_type.startswith("application/json") and raw.is_openai_error(reply.body)
    ):
        problems.append(f"4xx not an OpenAI error JSON ({content_type or 'no content-type'})")
    if status < 500 and status not in ALLOWED[sent.operation]:
        problems.append(f"unexpected status {status}")
    if status == 401 and (open_mode or sent.right_key):
        problems.append("401 " + ("in open mode" if open_mode else "with the master key"))
    if status == 404 and sent.variant == "gateway" and result.error_code == "model_not_found":
        problems.append(f"404 model_not_found for the gateway's own {GATEWAY_MODEL[sent.operation]}")
    if status == 200:
        shape = _ok_shape(sent, content_type, reply.body, data)
        if shape:
            problems.append(shape)
    for name, value in reply.headers:
        if name in raw.INJECTED:
            problems.append(f"header injection: {name.decode()}")
        if any((b < 0x20 and b != 0x09) or b >= 0x7F for b in name + value):
            problems.append(f"unsafe bytes in response header {name[:40]!r}")
    return result


def _ok_shape(sent: Sent, content_type: str, body: bytes, data: Any) -> str | None:
    """What is wrong with a 200 (None when it has the operation's shape)."""
    if sent.stream and sent.operation in STREAM_ENDS:
        if not content_type.startswith("text/event-stream"):
            return f"200 stream with content-type {content_type or 'none'}"
        if not any(end in body for end in STREAM_ENDS[sent.operation]):
            return "200 stream without its closing event or an error event"
        return None
    if not isinstance(data, dict):
        return f"200 without a JSON object ({content_type or 'no content-type'})"
    expected = {
        "POST /chat/completions": ("object", "chat.completion"),
        "POST /responses": ("object", "response"),
        "POST /completions": ("object", "text_completion"),
        "POST /embeddings": ("object", "list"),
        "GET /models": ("object", "list"),
        "GET /models/{model}": ("object", "model"),
    }[sent.operation]
    if data.get(expected[0]) != expected[1]:
        return f"200 with {expected[0]}={data.get(expected[0])!r}, not {expected[1]!r}"
    return None


def conformance(case: Any, sent: Sent, reply: raw.Reply, seconds: float) -> str | None:
    """Whether a 200 conforms to OpenAI's response schema (schemathesis' check), as a message or None."""
    import requests
    import schemathesis
    from schemathesis.specs.openapi.checks import response_schema_conformance

    if sent.stream or len(reply.body) >= raw.BODY_KEEP:
        return None
    headers: dict[str, list[str]] = {}
    for name, value in reply.headers:
        headers.setdefault(name.decode("latin-1"), []).append(value.decode("latin-1"))
    prepared = requests.Request(sent.method, sent.url, data=sent.body).prepare()
    response = schemathesis.Response(reply.status or 0, headers, reply.body, prepared, seconds, verify=False)
    try:
        case.validate_response(response, checks=[response_schema_conformance])
    except (Exception, BaseExceptionGroup) as exc:  # schemathesis' FailureGroup is an exception group
        first = [line.strip() for line in str(exc).splitlines() if line.strip()]
        return " | ".join(first[1:3])[:300] or type(exc).__name__
    return None


# --- running ------------------------------------------------------------------------------------------


def load_operations(spec: Path) -> dict[str, Any]:
    import schemathesis

    schema = schemathesis.openapi.from_path(str(spec)).include(name=list(OPERATIONS))
    found = {}
    for item in schema.get_all_operations():
        operation = item.ok()
        found[operation.label] = operation
    missing = set(OPERATIONS) - set(found)
    if missing:
        raise RuntimeError(f"{spec} has no {', '.join(sorted(missing))}")
    return found


def cells(operations: dict[str, Any]) -> Iterator[tuple[str, str, str]]:
    for label in OPERATIONS:
        for mode in ("positive", "negative"):
            for variant in ("spec", "gateway", "hostile") if label in GATEWAY_MODEL else ("spec",):
                yield label, mode, variant


@dataclass
class Cell:
    """One operation x generation mode x model variant, against one gateway."""

    operation: str
    mode: str
    variant: str
    number: int
    deadline: float


@dataclass
class Runner:
    """What the cases of a run share: the gateway (replaced when restarted), settings and the report."""

    gateway: raw.Gateway
    report: Report
    base_url: str
    timeout: float
    conformance_check: bool
    verbose: bool

    def run_cell(self, operation: Any, cell: Cell, *, max_examples: int, seed: int) -> bool:
        """Run the cell's examples; whether its time ran out first."""
        from hypothesis import HealthCheck, Phase, given, settings
        from hypothesis import seed as hypothesis_seed
        from schemathesis import GenerationMode

        counter = [0]

        @hypothesis_seed(seed * 1000 + cell.number)
        @settings(
            max_examples=max_examples,
            database=None,
            deadline=None,
            phases=[Phase.generate],
            suppress_health_check=list(HealthCheck),
        )
        @given(case=operation.as_strategy(generation_mode=GenerationMode(cell.mode)))
        def one(case: Any) -> None:
            if time.monotonic() > cell.deadline:
                raise TimeUp
            counter[0] += 1
            self.send(case, cell, counter[0] - 1)

        try:
            one()
        except TimeUp:
            return True
        return False

    def send(self, case: Any, cell: Cell, index: int) -> None:
        master_key = self.gateway.master_key
        try:
            sent = build(
                case,
                base_url=self.base_url,
                operation=cell.operation,
                mode=cell.mode,
                variant=cell.variant,
                index=index,
                master_key=master_key,
            )
        except Exception as exc:  # a case the request builder cannot put on the wire
            self.report.skipped[f"unsendable ({type(exc).__name__})"] += 1
            return
        gateway = self.gateway
        outcome, reply, took = asyncio.run(
            raw.exchange(gateway.host, gateway.port, raw.Case("openapi", [sent.data]), self.timeout)
        )
        result = judge(sent, outcome, reply, took, open_mode=master_key is None)
        if self.conformance_check and result.status == 200 and not result.problems:
            result.conformance = conformance(case, sent, reply, took)
        self.gateway = _after(gateway, result)
        self.report.results.append(result)
        if self.verbose:
            flag = "FAIL" if result.problems else "ok"
            print(
                f"{flag:4} {cell.operation:24} {cell.mode:8} {cell.variant:8} {result.outcome:6} {'; '.join(result.problems)}",
                flush=True,
            )


def run_openapi(
    gateway: raw.Gateway,
    *,
    spec: Path = SPEC,
    max_examples: int,
    seconds: float,
    seed: int,
    timeout: float,
    label: str = "",
    conformance_check: bool = True,
    verbose: bool = False,
) -> Report:
    """Every operation x generation mode x model variant, within ``seconds`` (time left is shared out)."""
    operations = load_operations(spec)
    base_url = f"http://{gateway.host}:{gateway.port}/v1"
    report = Report(label or ("master" if gateway.master_key else "open"), base_url)
    report.open_mode = gateway.master_key is None
    runner = Runner(gateway, report, base_url, timeout, conformance_check, verbose)
    started = time.monotonic()
    todo = [(number, *cell) for number, cell in enumerate(cells(operations))]
    gateway.new_log()
    for round_ in range(ROUNDS):
        # Time left is shared out among the cells still to run; a cell cut short by its share runs again
        # in the next round (with other examples) while there is time left from the quicker ones.
        cut: list[tuple[int, str, str, str]] = []
        for position, (number, operation, mode, variant) in enumerate(todo):
            left = seconds - (time.monotonic() - started)
            if left <= 0:
                if round_ == 0:
                    report.skipped["cells not reached (--seconds)"] += 1
                continue
            cell = Cell(operation, mode, variant, number, time.monotonic() + left / (len(todo) - position))
            ran = runner.run_cell(operations[operation], cell, max_examples=max_examples, seed=seed + round_)
            if ran:
                cut.append((number, operation, mode, variant))
        todo = cut
        if not todo or seconds - (time.monotonic() - started) < 1:
            break
    report.seconds = time.monotonic() - started
    report.deaths = runner.gateway.deaths
    return report


def _after(gateway: raw.Gateway, result: Result) -> raw.Gateway:
    """Tracebacks in the log; after a failure, ``/health`` and the process (restarted when it died)."""
    logged = gateway.new_log()
    if "Traceback" in logged:
        result.problems.append(f"server logged a traceback: {raw.traceback_summary(logged)}")
    if not result.problems:
        return gateway
    if raw.health_sync(gateway.host, gateway.port, timeout=5) and gateway.exit_status() is None:
        return gateway
    status = gateway.exit_status()
    result.problems.append(f"gateway died: {status}" if status else "/health did not answer after the case")
    if status:
        gateway.deaths.append(f"{result.sent.operation}: {status}")
    if gateway.restart is None:
        return gateway
    if gateway.proc is not None:
        raw.stop(gateway.proc)
    fresh = gateway.restart()
    fresh.deaths = gateway.deaths
    return fresh


# --- the report ---------------------------------------------------------------------------------------


def _shell(text: bytes) -> str:
    """A bash word for ``text``: '...' when printable, else $'...' with escapes."""
    if all(0x20 <= b < 0x7F for b in text):
        return "'" + text.decode().replace("'", "'\"'\"'") + "'"
    escaped = "".join(chr(b) if 0x20 <= b < 0x7F and chr(b) not in "'\\" else f"\\x{b:02x}" for b in text)
    return "$'" + escaped + "'"


def curl(sent: Sent, out: Path | None, name: str, base_url: str | None) -> str:
    url = sent.url if base_url is None else base_url + sent.url.split("/v1", 1)[1]
    words = ["curl", "-sS", "-i", "-X", sent.method, _shell(url.encode("utf-8", "surrogatepass"))]
    for header, value in sent.headers:
        if header.lower() in (b"host", b"content-length"):
            continue
        words += ["-H", _shell(header + b": " + value) if value else _shell(header + b";")]
    if sent.body is not None:
        if len(sent.body) <= 1500 or out is None:
            words += ["--data-binary", _shell(sent.body)]
        else:
            path = out / f"{name}.json"
            path.write_bytes(sent.body)
            words += ["--data-binary", f"@{path}"]
    line = " ".join(words)
    if out is not None:
        (out / f"{name}.bin").write_bytes(sent.data)
        line += f"\n        exact bytes: bench/fuzz_socket.py --replay {out / (name + '.bin')} --url URL"
    return line


def _kind(problem: str) -> str:
    return problem.split("(", maxsplit=1)[0].split(":", maxsplit=1)[0].strip()


def signature(result: Result) -> str:
    kinds = ", ".join(sorted({_kind(p) for p in result.problems}))
    trace = next((p.split(": ", 1)[1] for p in result.problems if p.startswith("server logged")), "")
    if " (at " in trace:  # one cause, one group: where it was raised, whatever the message says
        trace = trace.split(":", 1)[0] + " at " + trace.rsplit(" (at ", 1)[1].rstrip(")")
    detail = result.error_code or result.content_type.split(";")[0] or "-"
    return f"{result.sent.operation} | {result.outcome} | {kinds} | {trace or detail}"


def summarize(reports: Sequence[Report], out: Path | None, *, self_started: bool) -> tuple[str, int]:
    lines: list[str] = []
    total_failures = 0
    for report in reports:
        results = report.results
        failures = report.failures
        total_failures += len(failures)
        lines.append(
            f"== {report.label} ({report.base_url}): {len(results)} cases in {report.seconds:.0f} s, {len(failures)} failing"
        )
        if report.skipped:
            lines.append("   skipped: " + ", ".join(f"{k}: {v}" for k, v in sorted(report.skipped.items())))
        if report.deaths:
            lines.append("   gateway deaths: " + "; ".join(report.deaths))
        lines.append(
            f"   {'operation':24} {'mode':8} {'variant':8} {'cases':>6} {'5xx':>4} {'hang':>5} {'close':>5} {'shape':>5} {'status':>6} {'fail':>5}  statuses"
        )
        keys = sorted(
            {(r.sent.operation, r.sent.mode, r.sent.variant) for r in results},
            key=lambda k: (OPERATIONS.index(k[0]), k[1], k[2]),
        )
        for key in [*keys, None]:
            rs = [r for r in results if key is None or (r.sent.operation, r.sent.mode, r.sent.variant) == key]

            def count(word: str, rs: list[Result] = rs) -> int:
                return sum(1 for r in rs if any(word in p for p in r.problems))

            statuses = Counter(r.outcome for r in rs)
            name = ("all", "", "") if key is None else key
            lines.append(
                f"   {name[0]:24} {name[1]:8} {name[2]:8} {len(rs):6} {count('5xx'):4} {count('hang'):5} {count('without a response'):5} "
                f"{count('OpenAI error') + count('200 '):5} {count('status') + count('401 ') + count('404 model'):6} {sum(1 for r in rs if r.problems):5}  "
                + " ".join(f"{k}x{v}" for k, v in sorted(statuses.items()))
            )
        per_op = Counter(r.sent.operation for r in results)
        lines.append(
            "   cases per operation: " + ", ".join(f"{op}: {per_op.get(op, 0)}" for op in OPERATIONS)
        )
        mismatches = Counter(f"{r.sent.operation}: {r.conformance}" for r in results if r.conformance)
        if mismatches:
            lines.append(
                f"   information: {sum(mismatches.values())} 200s not conforming to OpenAI's response schema:"
            )
            lines += [f"     [{n}] {text}" for text, n in mismatches.most_common(CONFORMANCE_SHOWN)]
        refused = Counter(
            f"{r.sent.operation}: {r.status} {r.error_code} param={r.error_param}"
            for r in results
            if r.sent.mode == "positive"
            and r.sent.variant == "gateway"
            and r.status != 200
            and (r.sent.right_key or report.open_mode)
        )
        if refused:
            lines.append(
                f"   information: {sum(refused.values())} spec-valid requests naming a gateway model were refused:"
            )
            lines += [f"     [{n}] {text}" for text, n in refused.most_common(CONFORMANCE_SHOWN)]
        lines.append("")
        groups: dict[str, list[Result]] = {}
        for result in failures:
            groups.setdefault(signature(result), []).append(result)
        lines.append(f"   {len(groups)} distinct failures:")
        for number, (sig, members) in enumerate(sorted(groups.items(), key=lambda kv: -len(kv[1]))):
            first = members[0]
            lines.append(f"   -- [{len(members)}] {sig}")
            lines.append(f"      {first.sent.mode}/{first.sent.variant}: {'; '.join(first.problems)}")
            if first.body_head:
                lines.append(f"      body: {first.body_head[:200]!r}")
            for k, member in enumerate(members[:MAX_REPRODUCED]):
                base = None if not self_started else "http://127.0.0.1:8000/v1"
                lines.append("      " + curl(member.sent, out, f"{report.label}-{number:03d}-{k}", base))
        lines.append("")
    return "\n".join(lines), total_failures


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--url", help="a running gateway (default: start one)")
    parser.add_argument(
        "--master-key",
        default=None,
        help=f"the gateway's master key (started gateways: {raw.DEFAULT_MASTER_KEY})",
    )
    parser.add_argument(
        "--auth", choices=["open", "master", "both"], default="both", help="which gateways to start"
    )
    parser.add_argument(
        "--max-examples", type=int, default=300, help="per operation x generation mode x model variant"
    )
    parser.add_argument("--seconds", type=float, default=180, help="for everything, split over the gateways")
    parser.add_argument(
        "--timeout", type=float, default=10.0, help="seconds a request may wait for its answer"
    )
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--spec", type=Path, default=SPEC)
    parser.add_argument(
        "--memory-limit", type=int, default=4_000_000_000, help="address space of a started gateway (0: none)"
    )
    parser.add_argument("--config", type=Path, help="config file for the started gateways")
    parser.add_argument("--src", type=Path, help="run the started gateways from this source tree")
    parser.add_argument(
        "--no-conformance", action="store_true", help="skip the response-schema check of 200s"
    )
    parser.add_argument(
        "--out", type=Path, help="results directory (default bench/results/fuzz-openapi-<time>)"
    )
    parser.add_argument("-v", "--verbose", action="store_true")
    args = parser.parse_args(argv)
    try:
        import schemathesis  # noqa: F401
    except ImportError:
        print(
            'schemathesis is missing: .venv/bin/pip install -e ".[dev]" (or: pip install schemathesis)',
            file=sys.stderr,
        )
        return 2
    if not args.spec.exists():
        print(f"no spec at {args.spec} (--spec)", file=sys.stderr)
        return 2
    out = args.out or HERE / "results" / f"fuzz-openapi-{dt.datetime.now():%Y%m%d-%H%M%S}"
    out.mkdir(parents=True, exist_ok=True)
    modes = ["open", "master"] if args.auth == "both" else [args.auth]
    if args.url:
        modes = ["master" if args.master_key else "open"]
    reports: list[Report] = []
    workdir = Path(tempfile.mkdtemp(prefix="llmgate-fuzz-openapi-"))
    try:
        for mode in modes:
            key = (args.master_key or raw.DEFAULT_MASTER_KEY) if mode == "master" else None
            if args.url:
                parts = urlsplit(args.url)
                gateway = raw.Gateway(parts.hostname or "127.0.0.1", parts.port or 80, key)
            else:
                gateway = raw.start_gateway(
                    workdir / mode,
                    master_key=key,
                    memory_limit=args.memory_limit,
                    config=args.config,
                    src=args.src,
                    name=mode,
                )
            print(
                f"{mode}: fuzzing http://{gateway.host}:{gateway.port}/v1 for {args.seconds / len(modes):.0f} s",
                file=sys.stderr,
                flush=True,
            )
            try:
                report = run_openapi(
                    gateway,
                    spec=args.spec,
                    max_examples=args.max_examples,
                    seconds=args.seconds / len(modes),
                    seed=args.seed,
                    timeout=args.timeout,
                    label=mode,
                    conformance_check=not args.no_conformance,
                    verbose=args.verbose,
                )
            finally:
                for proc_owner in [gateway]:
                    if proc_owner.proc is not None:
                        raw.stop(proc_owner.proc)
                        if proc_owner.log_path is not None:
                            shutil.copy(proc_owner.log_path, out / f"gateway-{mode}.log")
            reports.append(report)
            with (out / "results.jsonl").open("a") as sink:
                for r in report.results:
                    sink.write(
                        json.dumps(
                            {
                                "run": mode,
                                "operation": r.sent.operation,
                                "mode": r.sent.mode,
                                "variant": r.sent.variant,
                                "outcome": r.outcome,
                                "content_type": r.content_type,
                                "seconds": round(r.seconds, 4),
                                "problems": r.problems,
                                "conformance": r.conformance,
                            }
                        )
                        + "\n"
                    )
    except RuntimeError as exc:
        print(f"could not run: {exc}", file=sys.stderr)
        return 2
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    text, failures = summarize(reports, out, self_started=not args.url)
    if not args.url:
        text = (
            "curl lines assume `llmgate serve --port 8000` (no config; for the master run with "
            f"LLMGATE_MASTER_KEY={args.master_key or raw.DEFAULT_MASTER_KEY}).\n\n" + text
        )
    (out / "summary.txt").write_text(text + "\n")
    print(text)
    print(f"results in {out}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
