"""Multipart uploads: a file (a path, bytes or a binary file object) sent as a form, streamed.

An :class:`Upload` checks its source before anything is sent and, for each attempt of the call,
builds a fresh :class:`aiohttp.FormData` (aiohttp sets the ``Content-Type`` and its boundary)
whose file part reads the source in chunks from where it started, never whole into memory. A
path is opened when the upload is entered and closed when it is left; a caller's file object is
rewound for a retry and never closed. The file part is named ``file`` and carries a
``filename`` and a part ``Content-Type`` (guessed from the name, ``application/octet-stream``
when unknown), as the official SDK's async path sends it; text fields come first and are left
out when unset (the SDK's sync path would send them empty).
"""

from __future__ import annotations

import asyncio
import io
import mimetypes
import os
import stat
import unicodedata
from collections.abc import Callable, Mapping
from types import TracebackType
from typing import IO, Any, Union

from aiohttp import FormData
from aiohttp.abc import AbstractStreamWriter
from aiohttp.payload import Payload

from . import _validation as v
from ._errors import AilyValidationError

__all__ = ["FileSource", "Upload"]

#: What an upload takes: a path, the bytes themselves, or a file object opened in binary mode.
FileSource = Union[str, "os.PathLike[str]", bytes, bytearray, memoryview, IO[bytes]]

#: Bytes read from the source at a time.
CHUNK_SIZE = 64 * 1024
_DEFAULT_NAME = "file"
_OCTET_STREAM = "application/octet-stream"


def _has_control(text: str) -> bool:
    return any(unicodedata.category(ch) in ("Cc", "Cf", "Cs") for ch in text)


class Upload:
    """One file to send as a multipart form, checked before anything is sent.

    ``async with Upload(...) as upload:`` opens a path (a file object or bytes need nothing),
    then pass ``upload.form`` to the transport: it is called once per attempt.
    """

    __slots__ = (
        "_call",
        "_content_type",
        "_fields",
        "_file",
        "_filename",
        "_in_memory",
        "_path",
        "_read",
        "_seekable",
        "_size",
        "_start",
        "field",
    )

    def __init__(
        self,
        call: str,
        source: object,
        *,
        filename: object = None,
        content_type: object = None,
        field: str = "file",
        fields: Mapping[str, str | None] | None = None,
    ) -> None:
        self._call = call
        self.field = field
        self._path: str | None = None
        self._file: IO[bytes] | None = None
        self._in_memory = False
        if isinstance(source, str | os.PathLike):
            path = os.fspath(source)
            if not isinstance(path, str) or not path:
                raise AilyValidationError("file", "must be a non-empty path", call=call)
            self._path = path
            default_name = os.path.basename(path) or _DEFAULT_NAME
        elif isinstance(source, bytes | bytearray | memoryview):
            self._file = io.BytesIO(bytes(source))
            self._in_memory = True
            default_name = _DEFAULT_NAME
        elif callable(getattr(source, "read", None)):
            if isinstance(source, io.TextIOBase):
                raise AilyValidationError("file", "must be opened in binary mode ('rb')", call=call)
            self._file = source  # type: ignore[assignment]
            name = getattr(source, "name", None)
            base = os.path.basename(name) if isinstance(name, str) else ""
            default_name = base if base and not base.startswith("<") else _DEFAULT_NAME
        else:
            raise AilyValidationError(
                "file",
                "must be a path, bytes or a binary file object",
                call=call,
                got=type(source).__name__,
            )
        self._filename = _text(call, "filename", filename) if filename is not None else default_name
        if content_type is not None:
            self._content_type = _text(call, "content_type", content_type)
            if "/" not in self._content_type:
                raise AilyValidationError(
                    "content_type", "must be a MIME type (type/subtype)", call=call
                )
        else:
            self._content_type = mimetypes.guess_type(self._filename)[0] or _OCTET_STREAM
        self._fields = {k: _text(call, k, v) for k, v in (fields or {}).items() if v is not None}
        self._start = 0
        self._size: int | None = None
        self._seekable = False
        self._read = False  # the source was read from (a retry must rewind it)

    @property
    def filename(self) -> str:
        """The file part's ``filename``."""
        return self._filename

    @property
    def content_type(self) -> str:
        """The file part's ``Content-Type``."""
        return self._content_type

    @property
    def size(self) -> int | None:
        """Bytes the file part holds (``None`` until entered, or when it cannot be known)."""
        return self._size

    async def __aenter__(self) -> Upload:
        if self._path is not None:
            # Opened in a worker thread (a network drive may be slow); cancelled meanwhile,
            # the file is closed once the thread has opened it.
            opening: asyncio.Future[IO[bytes]] = asyncio.get_running_loop().run_in_executor(
                None, open, self._path, "rb"
            )
            try:
                self._file = await asyncio.shield(opening)
            except OSError as exc:
                raise AilyValidationError(
                    "file", f"must be a readable file ({exc.strerror})", call=self._call
                ) from None
            except asyncio.CancelledError:
                opening.add_done_callback(_close_opened)
                raise
        file = self._file
        assert file is not None
        self._seekable = _seekable(file)
        if self._seekable:
            self._start = file.tell()
        self._size = _size(file, self._start, self._seekable)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._path is not None and self._file is not None:
            self._file.close()
            self._file = None

    def form(self) -> FormData:
        """A fresh form for one attempt, its file part at the source's start."""
        file = self._file
        if file is None:
            raise RuntimeError("enter the Upload (async with) before building its form")
        if self._read:
            if not self._seekable:
                raise AilyValidationError(
                    "file",
                    "cannot be sent again after a failed attempt (the file object is not seekable)",
                    call=self._call,
                )
            file.seek(self._start)
        form = FormData(quote_fields=False)  # UTF-8 names as they are, as the SDK sends them
        for name, value in self._fields.items():
            form.add_field(name, value)
        form.add_field(
            self.field,
            _FilePart(file, self._content_type, self._size, self._in_memory, self._mark_read),
            filename=self._filename,
            content_type=self._content_type,
        )
        return form

    def _mark_read(self) -> None:
        self._read = True

    def __repr__(self) -> str:
        return f"<Upload {self._filename!r} {self._content_type} size={self._size}>"


def _text(call: str, field: str, value: object) -> str:
    value = v.text(call, field, value)
    if _has_control(value):
        raise AilyValidationError(field, "must not contain control characters", call=call)
    return value


def _close_opened(opening: asyncio.Future[IO[bytes]]) -> None:
    if not opening.cancelled() and opening.exception() is None:
        opening.result().close()


def _seekable(file: IO[bytes]) -> bool:
    try:
        return bool(file.seekable())
    except (AttributeError, OSError, ValueError):
        return False


def _size(file: IO[bytes], start: int, seekable: bool) -> int | None:
    """Bytes left from ``start``: a regular file's size, or the end a seek finds."""
    try:
        info = os.fstat(file.fileno())
        if stat.S_ISREG(info.st_mode):
            return max(0, info.st_size - start)
    except (AttributeError, OSError, ValueError, io.UnsupportedOperation):
        pass
    if not seekable:
        return None
    try:
        end = file.seek(0, io.SEEK_END)
        file.seek(start)
    except (OSError, ValueError):
        return None
    return max(0, end - start)


class _FilePart(Payload):
    """A file part read in chunks (in a worker thread unless in memory) as it is sent."""

    _autoclose = True  # the Upload owns the file: aiohttp must not close it

    def __init__(
        self,
        file: IO[bytes],
        content_type: str,
        size: int | None,
        in_memory: bool,
        on_read: Callable[[], None],
    ) -> None:
        super().__init__(file, content_type=content_type)
        self._size = size
        self._in_memory = in_memory
        self._on_read = on_read

    def decode(self, encoding: str = "utf-8", errors: str = "strict") -> str:
        raise TypeError("a file part is streamed, not decoded")

    async def write(self, writer: AbstractStreamWriter) -> None:
        await self.write_with_length(writer, None)

    async def write_with_length(
        self, writer: AbstractStreamWriter, content_length: int | None
    ) -> None:
        self._on_read()
        left = self._size if content_length is None else content_length
        if self._size is not None and left is not None:
            left = min(left, self._size)
        read = self._value.read
        in_memory = self._in_memory
        loop = asyncio.get_running_loop()
        while left is None or left > 0:
            want = CHUNK_SIZE if left is None else min(CHUNK_SIZE, left)
            chunk: Any = read(want) if in_memory else await loop.run_in_executor(None, read, want)
            if not chunk:
                return
            await writer.write(chunk)
            if left is not None:
                left -= len(chunk)
