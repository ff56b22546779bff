"""``/v1/files`` and ``/v1/batches`` over HTTP: OpenAI's shapes, the upload's limits, errors, ownership."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import pytest
from starlette.testclient import TestClient

from llmgate.config import Settings
from llmgate.gateway import Gateway
from llmgate.server.app import create_app

MASTER = "sk-test-master-key"
ADMIN = {"Authorization": f"Bearer {MASTER}"}
LIMIT = 3_000


def line(custom_id: str) -> bytes:
    body = {"model": "fast", "messages": [{"role": "user", "content": custom_id}], "max_tokens": 5}
    row = {"custom_id": custom_id, "method": "POST", "url": "/v1/chat/completions", "body": body}
    return json.dumps(row).encode() + b"\n"


@pytest.fixture
def client() -> Iterator[TestClient]:
    settings = Settings.model_validate(
        {
            "server": {"master_key": MASTER},
            "storage": {"database": "memory"},
            "providers": {"sim": {"type": "mock"}},
            "models": [{"name": "fast", "deployments": [{"provider": "sim", "model": "echo"}]}],
            "batch": {"max_file_bytes": LIMIT, "poll_seconds": 0.05},
        }
    )
    with TestClient(create_app(Gateway(settings)), raise_server_exceptions=False) as test_client:
        yield test_client


def key(client: TestClient) -> dict[str, str]:
    response = client.post("/admin/keys", json={"name": "batcher"}, headers=ADMIN)
    return {"Authorization": f"Bearer {response.json()['key']}"}


def upload(client: TestClient, auth: dict[str, str], body: bytes, **data: str) -> Any:
    return client.post(
        "/v1/files", headers=auth, data=data or {"purpose": "batch"}, files={"file": ("in.jsonl", body)}
    )


def test_the_whole_workflow_in_openai_shapes(client: TestClient) -> None:
    auth = key(client)
    stored = upload(client, auth, line("a") + line("b"))
    assert stored.status_code == 200, stored.text
    file = stored.json()
    assert (file["object"], file["purpose"], file["filename"], file["bytes"]) == (
        "file",
        "batch",
        "in.jsonl",
        len(line("a") + line("b")),
    )
    assert client.get(f"/v1/files/{file['id']}/content", headers=auth).content == line("a") + line("b")
    created = client.post(
        "/v1/batches",
        headers=auth,
        json={"input_file_id": file["id"], "endpoint": "/v1/chat/completions", "completion_window": "24h"},
    )
    assert created.status_code == 200, created.text
    batch = created.json()
    assert (batch["object"], batch["status"], batch["endpoint"]) == (
        "batch",
        "validating",
        "/v1/chat/completions",
    )
    assert batch["request_counts"] == {"total": 0, "completed": 0, "failed": 0}
    deadline = time.monotonic() + 20
    while batch["status"] != "completed" and time.monotonic() < deadline:
        time.sleep(0.02)
        batch = client.get(f"/v1/batches/{batch['id']}", headers=auth).json()
    assert batch["status"] == "completed"
    assert batch["request_counts"] == {"total": 2, "completed": 2, "failed": 0}
    assert batch["error_file_id"] is None
    output = client.get(f"/v1/files/{batch['output_file_id']}/content", headers=auth)
    assert sorted(json.loads(row)["custom_id"] for row in output.text.splitlines()) == ["a", "b"]
    page = client.get("/v1/batches?limit=1", headers=auth).json()
    assert (page["object"], [b["id"] for b in page["data"]], page["has_more"]) == (
        "list",
        [batch["id"]],
        False,
    )
    assert page["first_id"] == page["last_id"] == batch["id"]
    files = client.get("/v1/files", headers=auth).json()["data"]
    assert {f["purpose"] for f in files} == {"batch", "batch_output"}
    deleted = client.delete(f"/v1/files/{file['id']}", headers=auth).json()
    assert deleted == {"id": file["id"], "object": "file", "deleted": True}
    assert client.get(f"/v1/files/{file['id']}", headers=auth).status_code == 404


def test_an_upload_over_the_limit_is_413_and_stores_nothing(client: TestClient) -> None:
    auth = key(client)
    too_big = upload(client, auth, b"x" * (LIMIT + 1))
    assert too_big.status_code == 413
    assert too_big.json()["error"]["type"] == "invalid_request_error"
    assert client.get("/v1/files", headers=auth).json()["data"] == []
    assert upload(client, auth, b"y" * LIMIT).status_code == 200


@pytest.mark.parametrize(
    ("data", "says"),
    [({"purpose": "fine-tune"}, "purpose"), ({"purpose": "assistants"}, "purpose")],
)
def test_only_batch_inputs_are_taken(client: TestClient, data: dict[str, str], says: str) -> None:
    response = upload(client, key(client), line("a"), **data)
    assert response.status_code == 400
    assert response.json()["error"]["param"] == says


def test_malformed_uploads_are_400(client: TestClient) -> None:
    auth = key(client)
    assert client.post("/v1/files", headers=auth, json={"purpose": "batch"}).status_code == 400
    no_file = client.post("/v1/files", headers=auth, data={"purpose": "batch"}, files={"other": ("x", b"1")})
    assert no_file.status_code == 400
    many = {f"field{n}": (None, b"v") for n in range(40)}
    assert (
        client.post("/v1/files", headers=auth, files={**many, "file": ("in.jsonl", line("a"))}).status_code
        == 400
    )
    assert client.get("/v1/files", headers=auth).json()["data"] == []


def test_bad_batch_requests_are_clear_errors(client: TestClient) -> None:
    auth = key(client)
    assert client.post("/v1/batches", headers=auth, content=b"{nope").status_code == 400
    unknown = client.post(
        "/v1/batches",
        headers=auth,
        json={"input_file_id": "file-nope", "endpoint": "/v1/chat/completions", "completion_window": "24h"},
    )
    assert unknown.status_code == 404
    assert client.get("/v1/batches/batch_nope", headers=auth).status_code == 404
    assert client.get("/v1/batches?limit=0", headers=auth).status_code == 400
    assert client.get("/v1/batches?limit=abc", headers=auth).status_code == 400
    assert client.post("/v1/batches/batch_nope/cancel", headers=auth).status_code == 404
    assert client.get("/v1/files", headers={"Authorization": "Bearer wrong"}).status_code == 401


def test_another_key_sees_nothing(client: TestClient) -> None:
    alice, bob = key(client), key(client)
    file = upload(client, alice, line("a")).json()
    assert client.get(f"/v1/files/{file['id']}", headers=bob).status_code == 404
    assert client.get(f"/v1/files/{file['id']}/content", headers=bob).status_code == 404
    assert client.delete(f"/v1/files/{file['id']}", headers=bob).status_code == 404
    assert client.get("/v1/files", headers=bob).json()["data"] == []
    assert client.get(f"/v1/files/{file['id']}", headers=ADMIN).status_code == 200


def test_a_body_the_multipart_parser_refuses_is_400_not_500(client: TestClient) -> None:
    auth = key(client)
    for body in [
        b"--xx\r\nno colon in this header line\r\n\r\nvalue\r\n--xx--\r\n",
        b"--xy\r\nA: b\r\n\r\nv\r\n--xx--\r\n",
        b"--xx\r\nA: " + b"h" * 20_000 + b"\r\n\r\nv\r\n--xx--\r\n",
    ]:
        response = client.post(
            "/v1/files",
            headers={**auth, "content-type": "multipart/form-data; boundary=xx"},
            content=body,
        )
        assert response.status_code == 400, response.text
        assert response.json()["error"]["code"] == "invalid_upload"


def test_every_byte_of_an_upload_counts_even_without_a_content_length(client: TestClient) -> None:
    auth = key(client)
    boundary = b"b0undary"
    fields = b"".join(
        b"--"
        + boundary
        + b'\r\nContent-Disposition: form-data; name="note'
        + str(n).encode()
        + b'"\r\n\r\n'
        + b"n" * 40_000
        + b"\r\n"
        for n in range(3)
    )
    file = b"--" + boundary + b'\r\nContent-Disposition: form-data; name="file"; filename="a.jsonl"\r\n\r\n'
    body = fields + file + line("a") + b"\r\n--" + boundary + b"--\r\n"

    def chunked() -> Iterator[bytes]:  # no Content-Length: sent chunked
        for start in range(0, len(body), 4096):
            yield body[start : start + 4096]

    response = client.post(
        "/v1/files",
        headers={**auth, "content-type": f"multipart/form-data; boundary={boundary.decode()}"},
        content=chunked(),
    )
    assert response.status_code == 413, response.text
    assert client.get("/v1/files", headers=auth).json()["data"] == []


def test_files_are_listed_in_pages(client: TestClient) -> None:
    auth = key(client)
    made = [upload(client, auth, line(f"r{n}")).json()["id"] for n in range(3)]
    first = client.get("/v1/files?limit=2", headers=auth).json()
    assert (len(first["data"]), first["has_more"]) == (2, True)
    rest = client.get(f"/v1/files?limit=2&after={first['last_id']}", headers=auth).json()
    assert (len(rest["data"]), rest["has_more"]) == (1, False)
    assert {f["id"] for f in first["data"] + rest["data"]} == set(made)
    for bad in ("limit=0", "limit=10001", "limit=x", "limit=" + "9" * 40, "order=asc"):
        assert client.get(f"/v1/files?{bad}", headers=auth).status_code == 400, bad
