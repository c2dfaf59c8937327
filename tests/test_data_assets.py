"""client.data_assets and client.data_asset_tags against a real FakeAily over HTTP: streamed
multipart uploads, create and the import that goes on after it, get, list (paging, filters,
repeated query keys), delete, tags, the SDK's loose shapes, errors, retries and validation."""

from __future__ import annotations

import asyncio
import io
import json
import tracemalloc
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from aily_async import (
    AilyClient,
    AilyConnectionError,
    AilyInvalidParamsError,
    AilyNotFoundError,
    AilyResponseError,
    AilyServerError,
    AilyValidationError,
    DataAsset,
    DataAssetFile,
    DataAssetResource,
    DataAssetTag,
    KnowledgeChunkSetting,
    KnowledgeFile,
    KnowledgeImportSetting,
    KnowledgeWikiSpace,
    KnowledgeWikiSubDoc,
    RetryPolicy,
)
from aily_async._uploads import CHUNK_SIZE
from aily_async.testing import FakeAily

APP = "spring_449d72db2f__c"
TEXT = {"file": {"title": "notes", "content": "Refunds take 7 days."}}


@pytest.fixture
async def quick() -> AsyncIterator[tuple[FakeAily, AilyClient]]:
    """A fake whose assets import in 0.1 s, and a client with no-wait retries."""
    async with (
        FakeAily(import_duration=0.1) as fake,
        AilyClient(
            "cli_test", "secret", base_url=fake.url, retry=RetryPolicy.no_wait(), limiter=None
        ) as client,
    ):
        yield fake, client


class SizedReader(io.BytesIO):
    """A binary file object that records the size of every read."""

    def __init__(self, data: bytes) -> None:
        super().__init__(data)
        self.sizes: list[int | None] = []

    def read(self, size: int | None = -1) -> bytes:
        self.sizes.append(size)
        return super().read(size)


class Pipe:
    """A file object that can only be read (no seek, no size), in chunks."""

    def __init__(self, data: bytes) -> None:
        self._data = io.BytesIO(data)
        self.sizes: list[int] = []

    def read(self, size: int) -> bytes:
        self.sizes.append(size)
        return self._data.read(size)


# -- uploads ------------------------------------------------------------------------------------


async def test_upload_from_a_path_streams_the_file_part(
    quick: tuple[FakeAily, AilyClient], tmp_path: Path
) -> None:
    """A path is sent as the multipart part ``file`` with its base name and a guessed type,
    byte for byte; the answer's token and MIME type come back; the file is closed after."""
    fake, client = quick
    data = bytes(range(256)) * 1000 + "报告\r\n--x\r\n".encode()
    path = tmp_path / "report.pdf"
    path.write_bytes(data)
    info = await client.data_assets.upload_file(APP, path, tenant_type="inner")
    assert isinstance(info, DataAssetFile)
    assert info.mime_type == "application/pdf"
    upload = fake.knowledge.uploads[-1]
    assert (upload.token, upload.filename, upload.content_type) == (
        info.token,
        "report.pdf",
        "application/pdf",
    )
    assert upload.data == data
    assert upload.tenant_type == "inner"
    request = fake.requests[-1]
    assert request.headers["Content-Type"].startswith("multipart/form-data; boundary=")
    assert request.query == {"tenant_type": "inner"}


async def test_upload_from_a_file_object_reads_in_chunks(
    quick: tuple[FakeAily, AilyClient],
) -> None:
    """A file object is read from where it stands in chunks of at most CHUNK_SIZE bytes
    (never whole), left open, with the name and type given."""
    fake, client = quick
    data = b"x" * (3 * CHUNK_SIZE + 17)
    source = SizedReader(b"HEADER" + data)
    source.seek(6)
    info = await client.data_assets.upload_file(
        APP, source, filename='notes 2024 "final".md', content_type="text/markdown"
    )
    assert info.mime_type == "text/markdown"
    upload = fake.knowledge.uploads[-1]
    assert upload.data == data
    assert upload.filename == 'notes 2024 "final".md'
    assert upload.content_type == "text/markdown"
    assert len(source.sizes) >= 4
    assert all(size is not None and 0 < size <= CHUNK_SIZE for size in source.sizes)
    assert not source.closed


async def test_upload_of_bytes_and_nameless_objects(quick: tuple[FakeAily, AilyClient]) -> None:
    """Bytes (and a file object without a name) go as ``file``, application/octet-stream,
    unless a filename says otherwise; a UTF-8 name arrives as it is."""
    fake, client = quick
    await client.data_assets.upload_file(APP, b"hello")
    assert (fake.knowledge.uploads[-1].filename, fake.knowledge.uploads[-1].content_type) == (
        "file",
        "application/octet-stream",
    )
    await client.data_assets.upload_file(APP, bytearray(b"a,b\n"), filename="销售.csv")
    assert fake.knowledge.uploads[-1].filename == "销售.csv"
    assert fake.knowledge.uploads[-1].content_type == "text/csv"
    await client.data_assets.upload_file(APP, memoryview(b"mv"))
    assert fake.knowledge.uploads[-1].data == b"mv"


async def test_upload_of_unknown_size_is_streamed_chunked(
    quick: tuple[FakeAily, AilyClient],
) -> None:
    """A file object that cannot seek or tell its size is streamed in chunks all the same."""
    fake, client = quick
    pipe = Pipe(b"p" * (2 * CHUNK_SIZE + 1))
    await client.data_assets.upload_file(APP, pipe, filename="pipe.txt")
    assert fake.knowledge.uploads[-1].data == b"p" * (2 * CHUNK_SIZE + 1)
    assert all(size <= CHUNK_SIZE for size in pipe.sizes)


async def test_upload_retried_after_429_sends_the_whole_file_again(
    quick: tuple[FakeAily, AilyClient], tmp_path: Path
) -> None:
    """A 429 means the upload did not land: it is sent again, the file rewound to where it
    started, for a path and for a file object alike."""
    fake, client = quick
    path = tmp_path / "a.txt"
    path.write_bytes(b"a" * (CHUNK_SIZE + 5))
    source = SizedReader(b"skip" + b"b" * (CHUNK_SIZE + 5))
    source.seek(4)
    for file, expected in ((path, path.read_bytes()), (source, b"b" * (CHUNK_SIZE + 5))):
        fake.inject("data_assets.upload_file", status=429, headers={"x-ogw-ratelimit-reset": "0"})
        await client.data_assets.upload_file(APP, file)
        assert fake.knowledge.uploads[-1].data == expected
    assert fake.route_counts()["data_assets.upload_file"] == 4


async def test_upload_that_cannot_be_rewound_is_not_sent_twice(
    quick: tuple[FakeAily, AilyClient],
) -> None:
    """After a 429, a file object that cannot seek is not sent again: a clear error."""
    fake, client = quick
    fake.inject("data_assets.upload_file", status=429, headers={"x-ogw-ratelimit-reset": "0"})
    with pytest.raises(AilyValidationError, match="cannot be sent again"):
        await client.data_assets.upload_file(APP, Pipe(b"once"))
    assert fake.route_counts()["data_assets.upload_file"] == 1


async def test_upload_that_may_have_landed_is_not_retried(
    quick: tuple[FakeAily, AilyClient],
) -> None:
    """A 500 or a connection dropped after the upload arrived is raised, not sent again."""
    fake, client = quick
    fake.inject("data_assets.upload_file", status=500)
    with pytest.raises(AilyServerError):
        await client.data_assets.upload_file(APP, b"x")
    fake.inject("data_assets.upload_file", drop="after")
    with pytest.raises(AilyConnectionError):
        await client.data_assets.upload_file(APP, b"x")
    assert fake.route_counts()["data_assets.upload_file"] == 2
    assert len(fake.knowledge.uploads) == 1  # the dropped one landed


async def test_upload_error_answer(quick: tuple[FakeAily, AilyClient]) -> None:
    """The service's 400 (an empty file, here) is an AilyInvalidParamsError."""
    _, client = quick
    with pytest.raises(AilyInvalidParamsError, match=r"data_assets\.upload_file: .*file: is empty"):
        await client.data_assets.upload_file(APP, b"")


async def test_cancelled_upload_closes_its_file(
    quick: tuple[FakeAily, AilyClient], tmp_path: Path
) -> None:
    """An upload cancelled while its answer is awaited closes the file it opened (warnings
    are errors here, so an unclosed file would fail the test) and leaves the client usable."""
    fake, client = quick
    path = tmp_path / "slow.txt"
    path.write_bytes(b"s" * (4 * CHUNK_SIZE))
    fake.inject("data_assets.upload_file", status=None, hold=5.0)
    task = asyncio.ensure_future(client.data_assets.upload_file(APP, path))
    for _ in range(200):
        await asyncio.sleep(0.01)
        if fake.knowledge.uploads:
            break
    assert str(path) in _open_files()  # open while the answer is awaited
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert str(path) not in _open_files()
    assert (await client.data_assets.upload_file(APP, b"after")).token


def _open_files() -> set[str]:
    """The paths this process has open (Linux: /proc/self/fd)."""
    fds = Path("/proc/self/fd")
    if not fds.is_dir():
        pytest.skip("needs /proc/self/fd")
    paths = set()
    for fd in fds.iterdir():
        try:
            paths.add(str(fd.readlink()))
        except OSError:
            continue
    return paths


async def test_a_large_path_is_never_held_in_memory(tmp_path: Path) -> None:
    """Uploading a 16 MiB file from a path allocates far less than the file's size (measured
    with tracemalloc against a server that discards what it reads)."""
    size = 16 * 1024 * 1024
    path = tmp_path / "big.bin"
    with path.open("wb") as out:
        for _ in range(size // CHUNK_SIZE):
            out.write(b"\x00" * CHUNK_SIZE)
    received = 0

    async def upload(request: web.Request) -> web.Response:
        nonlocal received
        async for chunk in request.content.iter_chunked(CHUNK_SIZE):
            received += len(chunk)
        body = {"code": 0, "msg": "ok", "data": {"file_info": {"token": "f-1"}}}
        return web.json_response(body)

    app = web.Application()
    app.router.add_post(f"/open-apis/aily/v1/apps/{APP}/data_assets/upload_file", upload)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        async with AilyClient(
            tenant_access_token="t-fixed", base_url=f"http://127.0.0.1:{port}", limiter=None
        ) as client:
            await client.data_assets.upload_file(APP, b"warm-up")  # pools, imports
            tracemalloc.start()
            try:
                info = await client.data_assets.upload_file(APP, path)
                _, peak = tracemalloc.get_traced_memory()
            finally:
                tracemalloc.stop()
    finally:
        await runner.cleanup()
    assert info.token == "f-1"
    assert received >= size
    assert peak < size // 4, f"peak {peak} bytes for a {size}-byte file"


@pytest.mark.parametrize(
    ("source", "kwargs", "field"),
    [
        (42, {}, "file"),
        ("", {}, "file"),
        ("/no/such/file.txt", {}, "file"),
        (io.StringIO("text"), {}, "file"),
        (b"x", {"filename": ""}, "filename"),
        (b"x", {"filename": "a\r\nb.txt"}, "filename"),
        (b"x", {"content_type": "pdf"}, "content_type"),
        (b"x", {"content_type": 5}, "content_type"),
        (b"x", {"tenant_type": 1}, "tenant_type"),
    ],
)
async def test_bad_upload_arguments_are_refused_before_sending(
    quick: tuple[FakeAily, AilyClient], source: Any, kwargs: dict[str, Any], field: str
) -> None:
    """Bad upload arguments raise AilyValidationError naming the field; nothing is sent."""
    fake, client = quick
    with pytest.raises(AilyValidationError) as info:
        await client.data_assets.upload_file(APP, source, **kwargs)
    assert info.value.field == field
    assert fake.requests == []


# -- create, get, delete ------------------------------------------------------------------------


async def test_create_then_the_import_goes_on(quick: tuple[FakeAily, AilyClient]) -> None:
    """Create sends the body with unset fields left out and ``tenant_type`` in the query; the
    asset is PROCESSING, then SUCCESS when read again with its status."""
    fake, client = quick
    info = await client.data_assets.upload_file(APP, b"Refunds take 7 days.", filename="p.txt")
    setting = KnowledgeImportSetting(
        chunk_setting=KnowledgeChunkSetting(rule_type="separator", size=500, overlap=0),
        file=KnowledgeFile(token=info.token, mime_type=info.mime_type, title="Policy"),
    )
    asset = await client.data_assets.create(
        APP,
        connect_type="direct",
        source_type="file",
        import_knowledge_setting=setting,
        description={"en_us": "Returns policy"},
        tenant_type="inner",
    )
    request = fake.requests[-1]
    assert request.json == {
        "connect_type": "direct",
        "source_type": "file",
        "import_knowledge_setting": {
            "chunk_setting": {"rule_type": "separator", "size": 500, "overlap": 0},
            "file": {"title": "Policy", "token": info.token, "mime_type": "text/plain"},
        },
        "description": {"en_us": "Returns policy"},
    }
    assert request.query == {"tenant_type": "inner"}
    assert asset.connect_status == "PROCESSING"
    assert asset.data_source_type == "file"
    assert asset.label == {"zh_cn": "Policy", "en_us": "Policy"}
    assert asset.import_knowledge_setting == setting
    assert isinstance(asset.created_time, int)
    assert fake.knowledge.created_data_assets == 1

    await _until_imported(client, asset.data_asset_id, fake)
    done = await client.data_assets.get(APP, asset.data_asset_id, with_connect_status=True)
    assert done.connect_status == "SUCCESS"
    assert done.connect_failed_reason is None
    assert done.updated_time is not None
    assert done.created_time is not None
    assert done.updated_time > done.created_time
    assert fake.requests[-1].query == {"with_connect_status": "true"}


async def _until_imported(client: AilyClient, asset_id: str, fake: FakeAily) -> None:
    for _ in range(50):
        asset = await client.data_assets.get(APP, asset_id, with_connect_status=True)
        if asset.connect_status != "PROCESSING":
            return
        await asyncio.sleep(0.02)
    raise AssertionError("the import never ended")


async def test_failed_import_reports_why(quick: tuple[FakeAily, AilyClient]) -> None:
    """An asset naming an unknown file token ends FAILED with a reason; a dict setting works."""
    fake, client = quick
    asset = await client.data_assets.create(
        APP,
        connect_type="direct",
        source_type="file",
        import_knowledge_setting={"file": {"token": "file_missing"}},
    )
    await _until_imported(client, asset.data_asset_id, fake)
    failed = await client.data_assets.get(APP, asset.data_asset_id, with_connect_status=True)
    assert failed.connect_status == "FAILED"
    assert failed.connect_failed_reason == "file token file_missing not found"


async def test_get_items_and_sdk_oddities(quick: tuple[FakeAily, AilyClient]) -> None:
    """Items come only when asked; their resources' misspelt ``resouce_type`` is read as
    ``resource_type``; times arrive as strings here and numbers in lists, ints both ways."""
    fake, client = quick
    asset = await client.data_assets.create(
        APP, connect_type="direct", source_type="file", import_knowledge_setting=TEXT
    )
    plain = await client.data_assets.get(APP, asset.data_asset_id)
    assert plain.items == ()
    assert plain.connect_status is None
    assert fake.requests[-1].query == {}
    full = await client.data_assets.get(
        APP, asset.data_asset_id, with_items=True, with_connect_status=True
    )
    assert fake.requests[-1].query == {
        "with_data_asset_item": "true",
        "with_connect_status": "true",
    }
    (item,) = full.items
    assert item.resources == (DataAssetResource(f"{asset.data_asset_id}_res", "file"),)
    wire = fake.knowledge.get_data_asset(asset.data_asset_id)
    assert isinstance(wire["created_time"], str)
    assert full.created_time == int(wire["created_time"])
    (listed,) = [a async for a in client.data_assets.list(APP)]
    assert listed.created_time == full.created_time


async def test_loose_asset_shapes_decode(quick: tuple[FakeAily, AilyClient]) -> None:
    """Nulls, empty objects, numeric strings, a ``resource_type`` beside ``resouce_type`` and
    unknown fields decode; an answer without ``data_asset_id`` is a response error."""
    fake, client = quick
    odd = {
        "data_asset_id": "asset_odd",
        "label": None,
        "description": {"en_us": "d", "zh_cn": None},
        "import_knowledge_setting": {"file": {}, "lark_wiki_space": {"sub_docs": [{"token": "s"}]}},
        "tags": None,
        "items": [{"resources": [{"resource_type": "a", "resouce_type": "b"}], "label": {}}],
        "created_time": "1711975665710",
        "updated_time": 1711975665710.0,
        "new_field": [1, 2],
    }
    fake.inject("data_assets.get", status=200, body={"code": 0, "data": {"data_asset": odd}})
    asset = await client.data_assets.get(APP, "asset_odd")
    assert asset.label == {}
    assert asset.description == {"en_us": "d"}
    assert asset.import_knowledge_setting == KnowledgeImportSetting(
        lark_wiki_space=KnowledgeWikiSpace(sub_docs=(KnowledgeWikiSubDoc(token="s"),))
    )
    assert asset.items[0].resources[0].resource_type == "a"
    assert asset.created_time == asset.updated_time == 1711975665710
    assert hash(asset)
    fake.inject("data_assets.get", status=200, body={"code": 0, "data": {"data_asset": {}}})
    with pytest.raises(AilyResponseError, match=r"data_asset_id"):
        await client.data_assets.get(APP, "asset_odd")
    bad_time = {"data_asset_id": "a", "created_time": "yesterday"}
    fake.inject("data_assets.get", status=200, body={"code": 0, "data": {"data_asset": bad_time}})
    with pytest.raises(AilyResponseError, match=r"data\.data_asset\.created_time"):
        await client.data_assets.get(APP, "a")


async def test_delete_returns_the_asset_and_a_lost_answer_is_done(
    quick: tuple[FakeAily, AilyClient],
) -> None:
    """Delete returns the asset removed; afterwards get is a 404. A delete whose answer was
    lost is retried, and the retry's "not found" counts as done."""
    fake, client = quick
    first = await client.data_assets.create(
        APP, connect_type="direct", source_type="file", import_knowledge_setting=TEXT
    )
    deleted = await client.data_assets.delete(APP, first.data_asset_id)
    assert deleted.data_asset_id == first.data_asset_id
    assert deleted.label == first.label
    with pytest.raises(AilyNotFoundError, match=r"data_assets\.get: .*not found"):
        await client.data_assets.get(APP, first.data_asset_id)

    second = await client.data_assets.create(APP, connect_type="direct", source_type="file")
    fake.reset_log()
    fake.inject("data_assets.delete", drop="after")
    gone = await client.data_assets.delete(APP, second.data_asset_id)
    assert gone == DataAsset(data_asset_id=second.data_asset_id)
    assert fake.route_counts()["data_assets.delete"] == 2
    assert fake.knowledge.data_asset_ids(APP) == []


async def test_reads_are_retried_and_errors_raised(quick: tuple[FakeAily, AilyClient]) -> None:
    """A 503 on get is retried (a read); a 404 is raised at once; a 500 on create is raised
    after one request (a create may have landed)."""
    fake, client = quick
    asset = await client.data_assets.create(APP, connect_type="direct", source_type="file")
    fake.reset_log()
    fake.inject("data_assets.get", status=503)
    assert (await client.data_assets.get(APP, asset.data_asset_id)).data_asset_id
    assert fake.route_counts()["data_assets.get"] == 2
    with pytest.raises(AilyNotFoundError):
        await client.data_assets.get(APP, "asset_nope")
    fake.inject("data_assets.create", status=500)
    with pytest.raises(AilyServerError):
        await client.data_assets.create(APP, connect_type="direct", source_type="file")
    assert fake.route_counts()["data_assets.create"] == 1


async def test_path_ids_are_percent_encoded(quick: tuple[FakeAily, AilyClient]) -> None:
    """An id with ``%``, ``?``, ``#`` or non-ASCII characters stays one path segment: the
    service sees it unchanged (and answers 404 for it)."""
    fake, client = quick
    for odd in ("x%2Fy", "a?b#c", "资产_1"):
        with pytest.raises(AilyNotFoundError):
            await client.data_assets.get(APP, odd)
        request = fake.requests[-1]
        assert request.route == "data_assets.get"
        assert request.path.endswith(f"/data_assets/{odd}")


# -- list and tags ------------------------------------------------------------------------------


async def test_list_walks_every_page_with_filters(quick: tuple[FakeAily, AilyClient]) -> None:
    """``list`` yields every asset across pages; ids and tag ids go as repeated query keys,
    flags as ``true``, and the service filters by them."""
    fake, client = quick
    ids = []
    for n in range(5):
        setting = {"file": {"title": f"doc {n}", "content": f"text number {n}"}}
        asset = await client.data_assets.create(
            APP, connect_type="direct", source_type="file", import_knowledge_setting=setting
        )
        ids.append(asset.data_asset_id)
    fake.reset_log()
    listed = [a.data_asset_id async for a in client.data_assets.list(APP, page_size=2)]
    assert listed == ids
    assert fake.route_counts()["data_assets.list"] == 3
    assert fake.requests[0].query == {"page_size": "2"}

    chosen = [
        a.data_asset_id async for a in client.data_assets.list(APP, data_asset_ids=ids[1:4:2])
    ]
    assert chosen == [ids[1], ids[3]]
    tag = fake.knowledge.add_data_asset_tag(APP, "odd", data_asset_ids=[ids[1], ids[3]])
    other = fake.knowledge.add_data_asset_tag(APP, "first", data_asset_ids=[ids[0]])
    tagged = client.data_assets.list(APP, data_asset_tag_ids=[tag, other], with_connect_status=True)
    assert [(a.data_asset_id, a.connect_status) async for a in tagged] == [
        (ids[0], "PROCESSING"),
        (ids[1], "PROCESSING"),
        (ids[3], "PROCESSING"),
    ]
    found = [a async for a in client.data_assets.list(APP, keyword="NUMBER 4", with_items=True)]
    assert [a.data_asset_id for a in found] == [ids[4]]
    assert found[0].items
    assert found[0].tags == ()
    assert [t.name for t in (await _first(client, ids[1])).tags] == ["odd"]


async def _first(client: AilyClient, asset_id: str) -> DataAsset:
    return await client.data_assets.get(APP, asset_id)


async def test_tags_list_pages_and_filters(quick: tuple[FakeAily, AilyClient]) -> None:
    """Tags are listed across pages, by keyword and by ids (repeated keys)."""
    fake, client = quick
    tags = [fake.knowledge.add_data_asset_tag(APP, name) for name in ("faq", "policy", "faq-v2")]
    fake.knowledge.add_data_asset_tag("spring_other__c", "faq")
    fake.reset_log()
    everything = [t async for t in client.data_asset_tags.list(APP, page_size=1)]
    assert everything == [
        DataAssetTag(tags[0], "faq"),
        DataAssetTag(tags[1], "policy"),
        DataAssetTag(tags[2], "faq-v2"),
    ]
    assert fake.route_counts()["data_asset_tags.list"] == 3
    faq = [t.name async for t in client.data_asset_tags.list(APP, keyword="faq")]
    assert faq == ["faq", "faq-v2"]
    some = client.data_asset_tags.list(APP, data_asset_tag_ids=[tags[2], tags[0]])
    assert [t.data_asset_tag_id async for t in some] == [tags[0], tags[2]]


async def test_list_error_answers(quick: tuple[FakeAily, AilyClient]) -> None:
    """A 400 on a list page raises AilyInvalidParamsError; a 5xx page is retried."""
    fake, client = quick
    fake.inject("data_asset_tags.list", status=400)
    with pytest.raises(AilyInvalidParamsError, match=r"^data_asset_tags\.list: "):
        [t async for t in client.data_asset_tags.list(APP)]
    fake.inject("data_assets.list", status=502)
    assert [a async for a in client.data_assets.list(APP)] == []


@pytest.mark.parametrize(
    ("call", "field"),
    [
        (lambda c: c.data_assets.get(APP, ""), "data_asset_id"),
        (lambda c: c.data_assets.get(APP, " x"), "data_asset_id"),
        (lambda c: c.data_assets.get(APP, "a\nb"), "data_asset_id"),
        (lambda c: c.data_assets.get(APP, 7), "data_asset_id"),
        (lambda c: c.data_assets.get("spring/x", "a"), "app_id"),
        (lambda c: c.data_assets.get(APP, "a", with_connect_status=1), "with_connect_status"),
        (lambda c: c.data_assets.delete(APP, "."), "data_asset_id"),
        (lambda c: c.data_assets.create(APP, connect_type=None, source_type="f"), "connect_type"),
        (
            lambda c: c.data_assets.create(
                APP, connect_type="d", source_type="f", description={"en": 1}
            ),
            "description",
        ),
        (
            lambda c: c.data_assets.create(
                APP, connect_type="d", source_type="f", import_knowledge_setting=["file"]
            ),
            "import_knowledge_setting",
        ),
        (
            lambda c: c.data_assets.create(
                APP, connect_type="d", source_type="f", import_knowledge_setting={"x": object()}
            ),
            "import_knowledge_setting",
        ),
        (lambda c: c.data_assets.list(APP, keyword=""), "keyword"),
        (lambda c: c.data_assets.list(APP, data_asset_ids="a"), "data_asset_ids"),
        (lambda c: c.data_assets.list(APP, page_size=True), "page_size"),
        (lambda c: c.data_asset_tags.list(APP, data_asset_tag_ids=[""]), "data_asset_tag_ids[0]"),
    ],
)
async def test_bad_arguments_are_refused_before_sending(
    quick: tuple[FakeAily, AilyClient], call: Any, field: str
) -> None:
    """Bad arguments raise AilyValidationError naming the field; nothing is sent."""
    fake, client = quick
    with pytest.raises(AilyValidationError) as info:
        await _invoke(call(client))
    assert info.value.field == field
    assert fake.requests == []


async def _invoke(result: Any) -> None:
    if hasattr(result, "__anext__"):
        await result.__anext__()
    else:
        await result


def test_models_are_frozen_and_comparable() -> None:
    """Models compare by value, hash, and cannot be changed."""
    one = DataAsset("a", label={"en_us": "x"})
    assert one == DataAsset("a", label={"en_us": "x"})
    assert hash(one) == hash(DataAsset("a", label={"en_us": "y"}))
    with pytest.raises(AttributeError):
        one.data_asset_id = "b"  # type: ignore[misc]
    assert json.dumps(DataAssetFile("t").token) == '"t"'


CALLS: dict[str, Any] = {
    "data_assets.upload_file": lambda c, aid: c.data_assets.upload_file(APP, b"x"),
    "data_assets.create": lambda c, aid: c.data_assets.create(
        APP, connect_type="direct", source_type="file"
    ),
    "data_assets.get": lambda c, aid: c.data_assets.get(APP, aid),
    "data_assets.list": lambda c, aid: c.data_assets.list(APP),
    "data_assets.delete": lambda c, aid: c.data_assets.delete(APP, aid),
    "data_asset_tags.list": lambda c, aid: c.data_asset_tags.list(APP),
}
READS = {"data_assets.get", "data_assets.list", "data_assets.delete", "data_asset_tags.list"}


@pytest.mark.parametrize("route", list(CALLS))
async def test_every_call_raises_4xx_and_5xx(
    quick: tuple[FakeAily, AilyClient], route: str
) -> None:
    """A 400 is raised at once; a 500 is raised after every attempt for reads and delete
    (retried) and after one for the writes (which may have landed)."""
    fake, client = quick
    asset = await client.data_assets.create(APP, connect_type="direct", source_type="file")
    fake.reset_log()
    fake.inject(route, status=400)
    with pytest.raises(AilyInvalidParamsError, match=rf"^{route}: "):
        await _drain(CALLS[route](client, asset.data_asset_id))
    assert fake.route_counts()[route] == 1
    fake.reset_log()
    fake.inject(route, status=500, times=10)
    with pytest.raises(AilyServerError, match=rf"^{route}: "):
        await _drain(CALLS[route](client, asset.data_asset_id))
    assert fake.route_counts()[route] == (4 if route in READS else 1)


async def _drain(result: Any) -> None:
    if hasattr(result, "__anext__"):
        async for _ in result:
            pass
    else:
        await result


async def test_the_fake_parses_multipart_for_real(quick: tuple[FakeAily, AilyClient]) -> None:
    """The fake wants a part named ``file`` in a well-formed multipart body (the API's 400
    otherwise), and takes one with no filename or part type, as the SDK's blocking path sends."""
    fake, _ = quick
    token = fake.issue_tenant_token()
    url = f"{fake.url}/open-apis/aily/v1/apps/{APP}/data_assets/upload_file"
    headers = {"Authorization": f"Bearer {token}"}
    async with aiohttp.ClientSession() as session:
        wrong = aiohttp.FormData()
        wrong.add_field("document", b"x", filename="a.txt")
        async with session.post(url, data=wrong, headers=headers) as resp:
            assert resp.status == 400
            assert "file: is required" in (await resp.json())["msg"]
        bare = b'--b0\r\nContent-Disposition: form-data; name="file"\r\n\r\nraw bytes\r\n--b0--\r\n'
        multipart = {**headers, "Content-Type": "multipart/form-data; boundary=b0"}
        async with session.post(url, data=bare, headers=multipart) as resp:
            assert resp.status == 200, await resp.text()
            assert (await resp.json())["data"]["file_info"][
                "mime_type"
            ] == "application/octet-stream"
        async with session.post(url, data=b"--b0\r\ngarbage", headers=multipart) as resp:
            assert resp.status == 400
            assert "multipart" in (await resp.json())["msg"]
    upload = fake.knowledge.uploads[-1]
    assert (upload.filename, upload.content_type, upload.data) == (None, None, b"raw bytes")
