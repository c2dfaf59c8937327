"""A batch's checkpoint: one JSON Lines file, one line per finished item, appended durably.

Each line is a JSON object with the item's ``key`` and ``index`` and either ``"ok": true`` and
its ``value``, ``"ok": false`` and its ``error``, or ``"pending"`` (a run that was created but
had not ended yet, so a restarted batch can adopt it instead of creating a second one)::

    {"key": 3, "index": 3, "ok": true, "input": "...", "value": {...}, "elapsed": 0.412}
    {"key": 4, "index": 4, "ok": false, "input": "...", "error": {"type": "...", ...}}
    {"key": 5, "index": 5, "pending": {"session_id": "session_…", "run_id": "run_…"}}

The last line of a key wins. Every line is flushed and ``fsync``-ed before the item counts as
done, so a killed process loses at most the items it was working on; a line torn by the kill
(no newline at the end of the file) is cut off when the file is opened again. While a batch
holds the file it holds an exclusive ``flock`` on it (POSIX), so two batches cannot interleave.
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

__all__ = ["Checkpoint", "Key", "dumps", "is_key", "to_json"]

logger = logging.getLogger("aily_async")

Key = int | str


def is_key(value: object) -> bool:
    """Whether ``value`` can be a checkpoint key (a JSON string or integer)."""
    return isinstance(value, str) or (isinstance(value, int) and not isinstance(value, bool))


def to_json(value: Any) -> Any:
    """``value`` as it reads back from JSON (tuples become lists, odd objects their repr)."""
    return json.loads(dumps(value))


def dumps(value: Any) -> str:
    """One compact JSON line (non-JSON values are written as their ``repr``)."""
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=repr)


class Checkpoint:
    """The append-only results file of one batch (see the module docstring)."""

    __slots__ = ("_file", "_fsync", "_path", "_records", "_superseded")

    def __init__(self, path: str | os.PathLike[str], *, fsync: bool = True) -> None:
        self._path = Path(path)
        self._fsync = fsync
        self._file: IO[str] | None = None
        self._records: dict[Key, dict[str, Any]] = {}
        self._superseded = 0

    @property
    def path(self) -> Path:
        """Where the file lives."""
        return self._path

    def open(self) -> dict[Key, dict[str, Any]]:
        """Lock and read the file (creating it if needed); return the last record of each key."""
        try:
            self._path.parent.mkdir(parents=True, exist_ok=True)
            file = open(self._path, "a+", encoding="utf-8")  # noqa: SIM115 - held open
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
                self._records = self._read(file)
            except (OSError, UnicodeDecodeError) as exc:
                raise CheckpointError(f"cannot read checkpoint {self._path}: {exc}") from None
        except BaseException:
            file.close()
            raise
        self._file = file
        return dict(self._records)

    def _read(self, file: IO[str]) -> dict[Key, dict[str, Any]]:
        file.seek(0)
        text = file.read()
        if text and not text.endswith("\n"):
            # The last line was torn by a kill: it never counted, cut it off.
            keep = text.rfind("\n") + 1
            logger.warning("checkpoint %s: dropping a torn last line", self._path)
            file.truncate(len(text[:keep].encode("utf-8")))
            text = text[:keep]
        records: dict[Key, dict[str, Any]] = {}
        for number, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except ValueError:
                raise CheckpointError(
                    f"checkpoint {self._path}:{number} is not JSON; is it a results file?"
                ) from None
            if not isinstance(record, dict) or not is_key(record.get("key")):
                raise CheckpointError(
                    f"checkpoint {self._path}:{number} has no string or integer 'key'"
                )
            if record["key"] in records:
                self._superseded += 1
            records[record["key"]] = record
        return records

    def write(self, record: Mapping[str, Any]) -> None:
        """Append one record and make it durable before returning."""
        if self._file is None:
            raise CheckpointError(f"checkpoint {self._path} is not open")
        line = dumps(record)
        key = record["key"]
        if key in self._records:
            self._superseded += 1
        self._records[key] = dict(record)
        try:
            self._file.write(line + "\n")
            self._file.flush()
            if self._fsync:
                os.fsync(self._file.fileno())
        except OSError as exc:
            raise CheckpointError(f"cannot write checkpoint {self._path}: {exc}") from None

    def compact(self) -> None:
        """Rewrite the file with only the last line of each key, in input order (atomic)."""
        if self._file is None or not self._superseded:
            return
        ordered = sorted(self._records.values(), key=lambda r: (r.get("index", 0), str(r["key"])))
        tmp = self._path.with_name(self._path.name + ".tmp")
        out = open(tmp, "w", encoding="utf-8")  # noqa: SIM115 - becomes the held file
        try:
            if fcntl is not None:  # the lock moves with the inode through the rename
                fcntl.flock(out.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            for record in ordered:
                out.write(dumps(record) + "\n")
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
