"""Reading ``multipart/form-data`` bodies (uploads), byte for byte, as the service would.

The body is split on its boundary; each part's headers give its field ``name``, its
``filename`` (plain, quoted with escapes, or RFC 5987 ``filename*``) and its ``Content-Type``;
its content is kept exactly. A body that is not well-formed multipart is the API's 400.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import attrs
from aiohttp.helpers import parse_mimetype
from aiohttp.multipart import content_disposition_filename, parse_content_disposition
from multidict import CIMultiDict

from ._wire import invalid

__all__ = ["Part", "parse_form"]


@attrs.frozen
class Part:
    """One part of a multipart form, as received.

    ``filename`` and ``content_type`` are ``None`` when the part had none (the official SDK's
    blocking path sends a file part with neither).
    """

    name: str
    data: bytes
    filename: str | None = None
    content_type: str | None = None

    @property
    def is_file(self) -> bool:
        """True when the part carried a ``filename`` (a file rather than a text field)."""
        return self.filename is not None


def _boundary(header: str) -> bytes:
    mime = parse_mimetype(header)
    if (mime.type, mime.subtype) != ("multipart", "form-data"):
        raise invalid("body", "must be multipart/form-data")
    boundary = mime.parameters.get("boundary", "")
    if not boundary or len(boundary) > 200:
        raise invalid("body", "multipart boundary is missing")
    return boundary.encode("latin-1", "replace")


def _headers(raw: bytes) -> CIMultiDict[str]:
    headers: CIMultiDict[str] = CIMultiDict()
    for line in raw.split(b"\r\n"):
        if not line:
            continue
        name, sep, value = line.partition(b":")
        if not sep:
            raise invalid("body", "malformed multipart part header")
        headers.add(name.strip().decode("latin-1"), value.strip().decode("utf-8", "replace"))
    return headers


def _part(chunk: bytes) -> Part:
    head, sep, data = chunk.partition(b"\r\n\r\n")
    if not sep:
        raise invalid("body", "malformed multipart part")
    headers = _headers(head)
    with warnings.catch_warnings():  # aiohttp warns about odd headers; the API just refuses
        warnings.simplefilter("ignore")
        kind, params = parse_content_disposition(headers.get("Content-Disposition"))
        filename = content_disposition_filename(params, "filename")
    name = params.get("name")
    if kind != "form-data" or not name:
        raise invalid("body", "a multipart part has no form-data name")
    return Part(name=name, data=data, filename=filename, content_type=headers.get("Content-Type"))


def parse_form(content_type: str, body: bytes) -> Sequence[Part]:
    """The parts of a ``multipart/form-data`` ``body``, in order (``content_type``: the
    request's ``Content-Type`` header, with its boundary)."""
    delimiter = b"--" + _boundary(content_type)
    # Everything before the first delimiter is preamble; the closing one ends in "--".
    pieces = body.split(b"\r\n" + delimiter)
    first = pieces[0]
    if not first.startswith(delimiter):
        raise invalid("body", "malformed multipart body")
    pieces[0] = first[len(delimiter) :]
    parts: list[Part] = []
    for piece in pieces:
        if piece.startswith(b"--"):
            return parts
        if not piece.startswith(b"\r\n"):
            raise invalid("body", "malformed multipart body")
        parts.append(_part(piece[2:]))
    raise invalid("body", "multipart body is not closed")
