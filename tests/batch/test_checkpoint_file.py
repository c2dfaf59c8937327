"""The checkpoint file read back off the happy path: odd line breaks in the text, a line torn
inside a character, and a file that belongs to another batch."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from _support import APP, lines_of, make_client

from aily_async import CheckpointError
from aily_async.testing import FakeAily

SKILL = "skill_echo"


async def test_text_with_unicode_line_breaks_reads_back(tmp_path: Path) -> None:
    """Inputs holding U+2028, U+2029, U+0085 (and the other characters ``str.splitlines``
    breaks at) are written as they are and read back on resume: every item is resumed, none
    is started again.

    Fails without the fix: the file was split with ``str.splitlines()``, which cut those rows
    in two, and resuming raised CheckpointError.
    """
    path = tmp_path / "results.jsonl"
    inputs = ["a\u2028b", "c\u2029d", "e\x85f", "g\x1ch\x1di\x1ej", "k\x0bl\x0cm", "plain"]
    async with FakeAily() as fake, make_client(fake) as client:
        first = await client.batch.skills(APP, SKILL, inputs, checkpoint=path)
        assert all(r.ok for r in first)
        assert "\u2028".encode() in path.read_bytes()  # written raw, not escaped
        second = await client.batch.skills(APP, SKILL, inputs, checkpoint=path)
        assert [r.resumed for r in second] == [True] * len(inputs)
        assert [r.value.json()["query"] for r in second if r.value] == inputs
        assert fake.route_counts()["skills.start"] == len(inputs)


async def test_a_last_line_torn_inside_a_character_is_cut_off(tmp_path: Path) -> None:
    """A kill in the middle of writing a multi-byte character leaves a last line that is not
    valid UTF-8: it is cut off like any torn line, and the items before it are resumed.

    Fails without the fix: the whole file was decoded at once, so it could not be read at all
    (CheckpointError).
    """
    path = tmp_path / "results.jsonl"
    inputs = ["日本語 1", "日本語 2", "日本語 3"]
    async with FakeAily() as fake, make_client(fake) as client:
        await client.batch.skills(APP, SKILL, inputs[:2], checkpoint=path)
        torn = '{"key":2,"index":2,"ok":true,"input":"日本語 3"}'.encode()
        cut = torn.index("本".encode()) + 1  # one byte into a three-byte character
        with path.open("ab") as file:
            file.write(torn[:cut])
        results = await client.batch.skills(APP, SKILL, inputs, checkpoint=path)
        assert [r.resumed for r in results] == [True, True, False]
        assert all(r.ok for r in results)
        assert fake.route_counts()["skills.start"] == 3
    path.read_bytes().decode("utf-8")  # whole lines only now
    assert [line["key"] for line in lines_of(path)[1:]] == [0, 1, 2]


async def test_a_checkpoint_of_another_batch_is_refused_and_left_as_it_is(tmp_path: Path) -> None:
    """A results file written by a batch of skill A, given to a batch of skill B or to a run
    batch, is refused with a CheckpointError naming both batches; nothing is called and not a
    byte of the file changes.

    Fails without the fix: the skill B batch took every item as done without a call, and the
    run batch redid them all and compacted the skill A results away.
    """
    path = tmp_path / "results.jsonl"
    inputs = ["one", "two"]
    async with FakeAily() as fake, make_client(fake) as client:
        await client.batch.skills(APP, "skill_0001", inputs, checkpoint=path)
        before = path.read_bytes()
        calls = sum(fake.route_counts().values())

        with pytest.raises(CheckpointError, match="another batch") as refused:
            await client.batch.skills(APP, "skill_0002", inputs, checkpoint=path)
        assert "skill_id=skill_0001" in str(refused.value)
        assert "skill_id=skill_0002" in str(refused.value)
        with pytest.raises(CheckpointError, match=r"another batch .*kind=runs"):
            await client.batch.runs(APP, inputs, checkpoint=path)
        with pytest.raises(CheckpointError, match="another batch"):
            await client.batch.map(_echo, inputs, checkpoint=path)

        assert path.read_bytes() == before
        assert sum(fake.route_counts().values()) == calls
        assert lines_of(path)[0]["batch"] == {
            "kind": "skills.start",
            "app_id": APP,
            "skill_id": "skill_0001",
            "biz_user_id": None,
        }
        again = await client.batch.skills(APP, "skill_0001", inputs, checkpoint=path)
        assert all(r.resumed for r in again)


async def _echo(value: str) -> str:
    return value


async def test_a_checkpoint_without_a_header_is_refused_with_the_line_to_add(
    tmp_path: Path,
) -> None:
    """A file with records but no header (an older version's) cannot say whose results it
    holds: it is refused, unchanged, with the header line to add if it is this batch's; once
    that line is added, the batch resumes from it. An empty file is simply started."""
    path = tmp_path / "results.jsonl"
    async with FakeAily() as fake, make_client(fake) as client:
        await client.batch.skills(APP, SKILL, ["one", "two"], checkpoint=path)
        legacy = b"".join(line + b"\n" for line in path.read_bytes().split(b"\n")[1:-1])
        path.write_bytes(legacy)
        with pytest.raises(CheckpointError, match="does not say which batch") as refused:
            await client.batch.skills(APP, SKILL, ["one", "two"], checkpoint=path)
        assert path.read_bytes() == legacy
        line = str(refused.value).rsplit(": ", 1)[1]
        assert json.loads(line)["batch"]["skill_id"] == SKILL
        path.write_bytes(line.encode() + b"\n" + legacy)
        results = await client.batch.skills(APP, SKILL, ["one", "two"], checkpoint=path)
        assert all(r.resumed for r in results)

        empty = tmp_path / "empty.jsonl"
        empty.write_bytes(b"")
        results = await client.batch.skills(APP, SKILL, ["one"], checkpoint=empty)
        assert [r.resumed for r in results] == [False]
