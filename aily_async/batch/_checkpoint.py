"""A batch's checkpoint: one JSON Lines file, a header, then one line per item, appended durably.

The first line names the batch the file belongs to (what it calls, on which app and skill);
every other line is a JSON object with the item's ``key`` and ``index`` and either ``"ok":
true`` and its ``value``, ``"ok": false`` and its ``error``, or only ``"pending"``: what a
restarted batch needs to find the item's effect (a run) instead of making it again::

    {"checkpoint": "aily_async.batch", "batch": {"kind": "runs", "app_id": "spring_…", ...}}
    {"key": 3, "index": 3, "ok": true, "input": "...", "value": {...}, "elapsed": 0.412}
    {"key": 4, "index": 4, "ok": false, "input": "...", "error": {...}, "pending": {...}}
    {"key": 5, "index": 5, "input": "...", "pending": {"session_id": "session_…", ...}}

The last line of a key wins. A file whose header names another batch, or that has records but
no header (written before headers existed), is refused with :class:`CheckpointError` and left
as it is. The file is read and written as bytes split at ``\\n`` only, each line decoded as
UTF-8 on its own (so text holding U+2028 or U+0085 stays on its line). Every line is flushed and
``fsync``-ed before the item counts as done, so a killed process loses at most the items it was
working on; a line torn by the kill (the bytes after the last ``\\n``, even half a character)
is cut off when the file is opened again. While a batch holds the file it holds an exclusive
``flock`` on it (POSIX), so two batches cannot interleave.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import IO, Any

from .._errors import CheckpointError

try:  # pragma: no cover - platform dependent
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

__all__ = ["FORMAT", "Checkpoint", "Key", "describe", "dumps", "encode", "is_key", "to_json"]

logger = logging.getLogger("aily_async")

Key = int | str

#: The ``checkpoint`` field of a header line.
FORMAT = "aily_async.batch"


def is_key(value: object) -> bool:
    """Whether ``value`` can be a checkpoint key (a JSON string or integer)."""
    return isinstance(value, str) or (isinstance(value, int) and not isinstance(value, bool))


def to_json(value: Any) -> Any:
    """``value`` as it reads back from JSON (tuples become lists, odd objects their repr)."""
    return json.loads(dumps(value))


def dumps(value: Any) -> str:
    """One compact JSON line (non-JSON values are written as their ``repr``)."""
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=repr)


def encode(value: Any) -> bytes:
    """``value`` as one line of UTF-8 bytes ending in ``\\n`` (JSON escapes every newline;
    text that is not valid Unicode, such as a lone surrogate, is written ``\\u``-escaped)."""
    line = dumps(value)
    try:
        return line.encode("utf-8") + b"\n"
    except UnicodeEncodeError:
        text = json.dumps(value, ensure_ascii=True, separators=(",", ":"), default=repr)
        return text.encode("ascii") + b"\n"


def describe(batch: Mapping[str, Any]) -> str:
    """A batch's identity in one line: ``kind=runs app_id=spring_… skill_id=skill_x``."""
    return " ".join(f"{name}={value}" for name, value in batch.items() if value is not None)


class Checkpoint:
    """The append-only results file of one batch (see the module docstring).

    ``batch`` is what defines the batch (its kind, app, skill...): written as the header of a
    new file, and checked against the header of an existing one.
    """

    __slots__ = ("_batch", "_file", "_fsync", "_path", "_records", "_superseded")

    def __init__(
        self, path: str | os.PathLike[str], *, batch: Mapping[str, Any], fsync: bool = True
    ) -> None:
        self._path = Path(path)
        self._batch: dict[str, Any] = to_json(dict(batch))
        self._fsync = fsync
        self._file: IO[bytes] | None = None
        self._records: dict[Key, dict[str, Any]] = {}
        self._superseded = 0

    @property
    def path(self) -> Path:
        """Where the file lives."""
        return self._path

    @property
    def header(self) -> dict[str, Any]:
        """The header line of this batch's file."""
        return {"checkpoint": FORMAT, "batch": self._batch}

    def open(self) -> dict[Key, dict[str, Any]]:
        """Lock and read the file (creating it if needed); return the last record of each key.

        Raises :class:`CheckpointError`, changing nothing, if the file belongs to another batch
        or cannot be read."""
        try:
            self._path.parent.mkdir(parents=True, exist_ok=True)
            file = open(self._path, "a+b")  # noqa: SIM115 - held open
        except OSError as exc:
            raise CheckpointError(f"cannot open checkpoint {self._path}: {exc}") from None
        try:
            if fcntl is not None:
                try:
                    fcntl.flock(file.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    raise CheckpointError(
                        f"checkpoint {self._path} is in use by another running batch"
                    ) from None
            try:
                file.seek(0)
                data = file.read()
                header, self._records, keep = self._parse(data)
                self._check(header, bool(self._records))
                if keep < len(data):
                    # The last line was torn by a kill: it never counted, cut it off.
                    logger.warning("checkpoint %s: dropping a torn last line", self._path)
                    file.truncate(keep)
                if header is None:
                    self._append(file, encode(self.header))
            except OSError as exc:
                raise CheckpointError(f"cannot read checkpoint {self._path}: {exc}") from None
        except BaseException:
            file.close()
            raise
        self._file = file
        return dict(self._records)

    def _parse(self, data: bytes) -> tuple[dict[str, Any] | None, dict[Key, dict[str, Any]], int]:
        """The header, the last record of each key, and how many bytes hold whole lines."""
        keep = data.rfind(b"\n") + 1  # what follows the last newline is a torn line
        header: dict[str, Any] | None = None
        records: dict[Key, dict[str, Any]] = {}
        first = True
        for number, raw in enumerate(data[:keep].split(b"\n")[:-1], 1):
            if not raw.strip():
                continue
            where = f"checkpoint {self._path}:{number}"
            try:
                record = json.loads(raw.decode("utf-8"))
            except UnicodeDecodeError:
                raise CheckpointError(f"{where} is not UTF-8 text; is it a results file?") from None
            except ValueError:
                raise CheckpointError(f"{where} is not JSON; is it a results file?") from None
            if first and isinstance(record, dict) and "batch" in record and "key" not in record:
                header = record
                first = False
                continue
            first = False
            if not isinstance(record, dict) or not is_key(record.get("key")):
                raise CheckpointError(f"{where} has no string or integer 'key'")
            if record["key"] in records:
                self._superseded += 1
            records[record["key"]] = record
        return header, records, keep

    def _check(self, header: dict[str, Any] | None, has_records: bool) -> None:
        """Refuse a file of another batch, or one that cannot say which batch it is of."""
        if header is None:
            if has_records:
                raise CheckpointError(
                    f"checkpoint {self._path} does not say which batch it belongs to (no header "
                    "line: it was written by an older aily_async, or is not a checkpoint), so "
                    "its results cannot be told from another batch's; nothing was changed. If "
                    "it is this batch's, make this its first line and start again: "
                    + dumps(self.header)
                )
            return
        theirs = header.get("batch")
        if theirs != self._batch:
            shown = describe(theirs) if isinstance(theirs, dict) else dumps(theirs)
            raise CheckpointError(
                f"checkpoint {self._path} belongs to another batch ({shown}), not to this one "
                f"({describe(self._batch)}); nothing was changed: use another file"
            )

    def _append(self, file: IO[bytes], line: bytes) -> None:
        file.write(line)
        file.flush()
        if self._fsync:
            os.fsync(file.fileno())

    def write(self, record: Mapping[str, Any]) -> None:
        """Append one record and make it durable before returning."""
        if self._file is None:
            raise CheckpointError(f"checkpoint {self._path} is not open")
        line = encode(record)
        key = record["key"]
        if key in self._records:
            self._superseded += 1
        self._records[key] = dict(record)
        try:
            self._append(self._file, line)
        except OSError as exc:
            raise CheckpointError(f"cannot write checkpoint {self._path}: {exc}") from None

    async def flush(self) -> None:
        """Nothing to wait for: :meth:`write` returns once its line is durable."""

    def compact(self) -> None:
        """Rewrite the file with its header and the last line of each key, in input order
        (atomic)."""
        if self._file is None or not self._superseded:
            return
        ordered = sorted(self._records.values(), key=lambda r: (r.get("index", 0), str(r["key"])))
        tmp = self._path.with_name(self._path.name + ".tmp")
        out = open(tmp, "wb")  # noqa: SIM115 - becomes the held file
        try:
            if fcntl is not None:  # the lock moves with the inode through the rename
                fcntl.flock(out.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            out.write(encode(self.header))
            for record in ordered:
                out.write(encode(record))
            out.flush()
            if self._fsync:
                os.fsync(out.fileno())
            os.replace(tmp, self._path)
        except BaseException:
            out.close()
            raise
        if self._fsync and hasattr(os, "O_DIRECTORY"):
            fd = os.open(self._path.parent, os.O_RDONLY | os.O_DIRECTORY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        self._superseded = 0
        old, self._file = self._file, out
        old.close()

    def close(self) -> None:
        """Release the lock and close the file. Idempotent."""
        file, self._file = self._file, None
        if file is not None:
            file.close()
