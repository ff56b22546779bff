"""``/v1/files`` and ``/v1/batches``: OpenAI's Files and Batches API, so the official SDK's batch workflow
works against the gateway for any backend. Files and jobs belong to the key that made them."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from llmgate.batch.jobs import MAX_FILES, MAX_PAGE
from llmgate.batch.wire import batch_object, file_object, page
from llmgate.core.codec import decode_json
from llmgate.core.errors import InvalidRequest, PayloadTooLarge
from llmgate.server.context import ServerContext
from llmgate.server.upload import OVERHEAD_BYTES, MultipartUpload
from llmgate.server.wire import encoder, read_body

JSON = "application/json"


class BatchRoutes:
    """The handlers, bound to one server's context."""

    def __init__(self, ctx: ServerContext) -> None:
        self.ctx = ctx
        self.jobs = ctx.gateway.batch_jobs

    async def upload(self, request: Request) -> Response:
        """``POST /v1/files`` (multipart: ``purpose=batch``, ``file``)."""
        caller = await self.ctx.authenticate(request)
        limit = self.jobs.settings.max_file_bytes
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > limit + OVERHEAD_BYTES:
            raise PayloadTooLarge(f"The upload is {declared} bytes; files are limited to {limit}.")
        stored = await self.jobs.upload(caller, MultipartUpload(request, max_bytes=limit))
        return _json(file_object(stored))

    async def list_files(self, request: Request) -> Response:
        """``GET /v1/files`` (``?purpose=&after=&limit=``), newest first."""
        caller = await self.ctx.authenticate(request)
        query = request.query_params
        if query.get("order", "desc") != "desc":
            raise InvalidRequest("Files are listed newest first only: order must be 'desc'.", param="order")
        files, more = await self.jobs.files(
            caller,
            purpose=query.get("purpose"),
            after=query.get("after"),
            limit=_limit(query.get("limit"), default=MAX_FILES, most=MAX_FILES),
        )
        return _json(page([file_object(file) for file in files], has_more=more))

    async def get_file(self, request: Request) -> Response:
        """``GET /v1/files/{file_id}``."""
        caller = await self.ctx.authenticate(request)
        return _json(file_object(await self.jobs.file(caller, request.path_params["file_id"])))

    async def file_content(self, request: Request) -> Response:
        """``GET /v1/files/{file_id}/content``: the body, streamed from the database."""
        caller = await self.ctx.authenticate(request)
        file, chunks = await self.jobs.content(caller, request.path_params["file_id"])
        headers = {"content-length": str(file.bytes)}
        return StreamingResponse(chunks, media_type="application/octet-stream", headers=headers)

    async def delete_file(self, request: Request) -> Response:
        """``DELETE /v1/files/{file_id}``."""
        caller = await self.ctx.authenticate(request)
        file_id = await self.jobs.delete_file(caller, request.path_params["file_id"])
        return _json({"id": file_id, "object": "file", "deleted": True})

    async def create(self, request: Request) -> Response:
        """``POST /v1/batches`` (``input_file_id``, ``endpoint``, ``completion_window``, ``metadata``)."""
        caller = await self.ctx.authenticate(request)
        body = decode_json(await read_body(request, self.ctx.max_body))
        return _json(batch_object(await self.jobs.create(caller, body)))

    async def get(self, request: Request) -> Response:
        """``GET /v1/batches/{batch_id}``."""
        caller = await self.ctx.authenticate(request)
        return _json(batch_object(await self.jobs.job(caller, request.path_params["batch_id"])))

    async def list(self, request: Request) -> Response:
        """``GET /v1/batches`` (``?after=&limit=``), newest first."""
        caller = await self.ctx.authenticate(request)
        limit = _limit(request.query_params.get("limit"), default=20, most=MAX_PAGE)
        found, more = await self.jobs.jobs(caller, after=request.query_params.get("after"), limit=limit)
        return _json(page([batch_object(job) for job in found], has_more=more))

    async def cancel(self, request: Request) -> Response:
        """``POST /v1/batches/{batch_id}/cancel``."""
        caller = await self.ctx.authenticate(request)
        return _json(batch_object(await self.jobs.cancel(caller, request.path_params["batch_id"])))


def _limit(text: str | None, *, default: int, most: int) -> int:
    """A page size from the query: a whole number from 1 to ``most``."""
    if text is None:
        return default
    if not text.isdigit() or len(text) > 6 or not 1 <= int(text) <= most:
        raise InvalidRequest(f"limit must be a whole number between 1 and {most}.", param="limit")
    return int(text)


def _json(data: object) -> Response:
    return Response(encoder.encode(data), media_type=JSON)
