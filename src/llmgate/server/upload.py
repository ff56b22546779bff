"""A ``multipart/form-data`` upload read as it streams in (python-multipart's push parser): the file's
body goes on to the store in pieces of about a megabyte, never held whole and never spooled to disk, and
its size limit is enforced on the bytes as they arrive, whatever ``Content-Length`` says."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager

from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser, MultipartState, parse_options_header
from starlette.requests import ClientDisconnect, Request

from llmgate.core.errors import ClientClosed, InvalidRequest, PayloadTooLarge

PIECE_BYTES = 1 << 20
MAX_FIELD_BYTES = 64 * 1024
MAX_PARTS = 16
OVERHEAD_BYTES = 64 * 1024
"""Bytes a form may add around the file (boundaries, part headers, the purpose field), at most."""


class MultipartUpload:
    """One upload: ``start()`` reads up to the file's body, ``chunks()`` streams it and reads the rest."""

    def __init__(self, request: Request, *, max_bytes: int) -> None:
        kind, options = parse_options_header(request.headers.get("content-type", ""))
        boundary = options.get(b"boundary")
        if kind != b"multipart/form-data" or not boundary:
            raise InvalidRequest(
                "POST /v1/files takes multipart/form-data with a 'purpose' field and a 'file'.",
                code="invalid_upload",
            )
        self.fields: dict[str, str] = {}
        self.filename: str | None = None
        self.size = 0
        self.received = 0
        self._max = max_bytes
        self._body = request.stream()
        self._ended = False
        self._headers: dict[bytes, bytes] = {}
        self._header = [bytearray(), bytearray()]
        self._name = ""
        self._in_file = False
        self._file_done = False
        self._value = bytearray()
        self._parts = 0
        self._pieces: list[bytes] = []
        self._buffered = 0
        self._parser = MultipartParser(
            boundary,
            {
                "on_part_begin": self._part_begin,
                "on_header_field": lambda data, start, end: self._header[0].extend(data[start:end]),
                "on_header_value": lambda data, start, end: self._header[1].extend(data[start:end]),
                "on_header_end": self._header_end,
                "on_headers_finished": self._headers_finished,
                "on_part_data": self._part_data,
                "on_part_end": self._part_end,
            },
        )

    async def start(self) -> None:
        """Read until the file's body begins (or the upload ends): fields before it, and its name."""
        while not self._in_file and not self._file_done and not self._ended:
            await self._feed()

    async def chunks(self) -> AsyncIterator[bytes]:
        """The file's body in pieces as it arrives; then the rest of the upload (later fields)."""
        while not self._ended:
            await self._feed()
            if self._buffered >= PIECE_BYTES or (self._file_done and self._pieces):
                yield self._take()
        if self._pieces:
            yield self._take()

    def _take(self) -> bytes:
        piece = b"".join(self._pieces)
        self._pieces, self._buffered = [], 0
        return piece

    async def _feed(self) -> None:
        try:
            block = await anext(self._body, None)
        except ClientDisconnect:
            raise ClientClosed("The client went away during the upload.") from None
        if block is None or self._parser.state == MultipartState.END:  # nothing after the last boundary
            self._ended = True
            with _malformed():
                self._parser.finalize()
            if self.filename is not None and not self._file_done:
                raise InvalidRequest("The upload ended in the middle of the file.", code="invalid_upload")
            return
        self.received += len(block)
        if self.received > self._max + OVERHEAD_BYTES:  # every byte counts, not only the file's
            raise PayloadTooLarge(
                f"The upload is over the limit of {self._max} bytes (batch.max_file_bytes)."
            )
        if block:
            with _malformed():
                self._parser.write(block)

    def _part_begin(self) -> None:
        self._parts += 1
        if self._parts > MAX_PARTS:
            raise InvalidRequest(f"An upload has at most {MAX_PARTS} parts.", code="invalid_upload")
        self._headers, self._name, self._value = {}, "", bytearray()

    def _header_end(self) -> None:
        field, value = self._header
        self._headers[bytes(field).strip().lower()] = bytes(value).strip()
        self._header = [bytearray(), bytearray()]

    def _headers_finished(self) -> None:
        _, options = parse_options_header(self._headers.get(b"content-disposition", b""))
        self._name = options.get(b"name", b"").decode("utf-8", "replace")
        filename = options.get(b"filename")
        if filename is not None and self._name == "file":
            if self.filename is not None:
                raise InvalidRequest("Upload one file at a time.", code="invalid_upload", param="file")
            self.filename = filename.decode("utf-8", "replace").replace("\\", "/").rsplit("/", 1)[-1]
            self._in_file = True

    def _part_data(self, data: bytes, start: int, end: int) -> None:
        if self._in_file:
            self.size += end - start
            if self.size > self._max:
                raise PayloadTooLarge(
                    f"The file is over the limit of {self._max} bytes (batch.max_file_bytes)."
                )
            self._pieces.append(bytes(data[start:end]))
            self._buffered += end - start
            return
        self._value.extend(data[start:end])
        if len(self._value) > MAX_FIELD_BYTES:
            raise InvalidRequest(f"A form field is over {MAX_FIELD_BYTES} bytes.", code="invalid_upload")

    def _part_end(self) -> None:
        if self._in_file:
            self._in_file, self._file_done = False, True
        elif self._name:
            self.fields[self._name] = self._value.decode("utf-8", "replace")


@contextmanager
def _malformed() -> Iterator[None]:
    """The parser's complaints (a bad boundary, a header line without a colon...) as a 400."""
    try:
        yield
    except MultipartParseError as error:
        raise InvalidRequest(
            f"The upload is not valid multipart/form-data: {error}", code="invalid_upload"
        ) from None
