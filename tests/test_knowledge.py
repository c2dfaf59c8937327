"""client.knowledge.ask against a real FakeAily over HTTP: answers from files and FAQ entries,
filters, the SDK's loose answer shapes, errors, retries and validation."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from aily_async import (
    AilyClient,
    AilyInvalidParamsError,
    AilyResponseError,
    AilyServerError,
    AilyValidationError,
    KnowledgeAnswer,
    KnowledgeFaq,
    KnowledgeFile,
    KnowledgeImportSetting,
    KnowledgeProcess,
    RetryPolicy,
)
from aily_async.testing import FakeAily

APP = "spring_449d72db2f__c"
POLICY = b"Refunds take 7 days.\nShipping is free over 50 euros.\nSupport answers on weekdays.\n"


@pytest.fixture
async def quick() -> AsyncIterator[tuple[FakeAily, AilyClient]]:
    """A fake whose data assets import at once, and a client with no-wait retries."""
    async with (
        FakeAily(import_duration=0) as fake,
        AilyClient(
            "cli_test", "secret", base_url=fake.url, retry=RetryPolicy.no_wait(), limiter=None
        ) as client,
    ):
        yield fake, client


async def _asset(client: AilyClient, data: bytes, filename: str) -> str:
    info = await client.data_assets.upload_file(APP, data, filename=filename)
    setting = KnowledgeImportSetting(file=KnowledgeFile(token=info.token, title=filename))
    asset = await client.data_assets.create(
        APP, connect_type="direct", source_type="file", import_knowledge_setting=setting
    )
    return asset.data_asset_id


async def test_ask_answers_from_an_imported_file(quick: tuple[FakeAily, AilyClient]) -> None:
    """A question is answered from the words of an uploaded and imported file; the request
    holds the question only (unset filters left out)."""
    fake, client = quick
    await _asset(client, POLICY, "policy.txt")
    answer = await client.knowledge.ask(APP, "How many days do refunds take?")
    assert isinstance(answer, KnowledgeAnswer)
    assert answer.text == "Refunds take 7 days."
    assert answer.has_answer is True
    assert answer.status == "SUCCESS"
    assert answer.finish_type == "ANSWER"
    assert answer.faq is None
    assert answer.process.chunks[0] == "Refunds take 7 days."
    request = fake.requests[-1]
    assert (request.route, request.method) == ("knowledge.ask", "POST")
    assert request.json == {"message": {"content": "How many days do refunds take?"}}


async def test_ask_filters_by_asset_and_tag(quick: tuple[FakeAily, AilyClient]) -> None:
    """``data_asset_ids`` and ``data_asset_tag_ids`` are sent as lists and narrow the search."""
    fake, client = quick
    first = await _asset(client, POLICY, "policy.txt")
    second = await _asset(client, b"Refunds for gift cards are not possible.\n", "gifts.txt")
    tag = fake.knowledge.add_data_asset_tag(APP, "gifts", data_asset_ids=[second])
    only_first = await client.knowledge.ask(APP, "refunds", data_asset_ids=[first])
    assert only_first.text == "Refunds take 7 days."
    assert fake.requests[-1].json["data_asset_ids"] == [first]
    tagged = await client.knowledge.ask(APP, "refunds", data_asset_tag_ids=(t for t in [tag]))
    assert tagged.text == "Refunds for gift cards are not possible."
    assert fake.requests[-1].json["data_asset_tag_ids"] == [tag]


async def test_faq_and_no_answer(quick: tuple[FakeAily, AilyClient]) -> None:
    """An FAQ entry answers with ``faq`` set; a question nothing answers has ``has_answer``
    false (the fake still sends a message, which ``text`` holds)."""
    fake, client = quick
    fake.knowledge.add_faq(APP, "Who are you?", "The support assistant.")
    answer = await client.knowledge.ask(APP, "  who ARE you? ")
    assert answer.faq == KnowledgeFaq(question="Who are you?", answer="The support assistant.")
    assert answer.text == "The support assistant."
    assert answer.finish_type == "FAQ"
    nothing = await client.knowledge.ask(APP, "zebra quantum")
    assert nothing.has_answer is False
    assert nothing.finish_type == "NO_ANSWER"
    assert nothing.text
    assert nothing.process == KnowledgeProcess()


async def test_csv_assets_report_sql_and_charts(quick: tuple[FakeAily, AilyClient]) -> None:
    """Process data carries ``sql_data`` and ``chart_dsls`` strings when tables answered."""
    _, client = quick
    await _asset(client, b"region,sales\nnorth sales,12\n", "sales.csv")
    answer = await client.knowledge.ask(APP, "north sales")
    assert answer.process.sql_data == ('SELECT * FROM "sales.csv"',)
    assert answer.process.chart_dsls == ('{"type": "table", "source": "sales.csv"}',)


ODD_ANSWERS: list[tuple[str, dict[str, Any], KnowledgeAnswer]] = [
    (
        "strings-for-booleans-and-json-chunks",
        {
            "status": "done",
            "has_answer": "false",
            "message": {"content": "maybe"},
            "process_data": {"chunks": ["a", {"k": 1}, None, 7], "sql_data": None},
            "faq_result": {},
            "extra": {"ignored": True},
        },
        KnowledgeAnswer(
            text="maybe",
            has_answer=False,
            status="done",
            process=KnowledgeProcess(chunks=("a", '{"k": 1}', "7")),
        ),
    ),
    ("all-missing", {}, KnowledgeAnswer()),
    (
        "nulls",
        {"message": None, "process_data": None, "faq_result": None, "has_answer": None},
        KnowledgeAnswer(),
    ),
]


@pytest.mark.parametrize(
    ("data", "expected"), [(d, e) for _, d, e in ODD_ANSWERS], ids=[i for i, _, _ in ODD_ANSWERS]
)
async def test_loose_answer_shapes_decode(
    quick: tuple[FakeAily, AilyClient], data: dict[str, Any], expected: KnowledgeAnswer
) -> None:
    """Answers the SDK would accept (missing, null, stringly-typed, extra fields; process
    entries that are not strings) decode to a KnowledgeAnswer."""
    fake, client = quick
    fake.inject("knowledge.ask", status=200, body={"code": 0, "msg": "ok", "data": data})
    assert await client.knowledge.ask(APP, "q") == expected


@pytest.mark.parametrize(
    ("data", "where"),
    [
        ({"message": "text"}, "message"),
        ({"has_answer": "maybe"}, "has_answer"),
        ({"process_data": {"chunks": "a"}}, "chunks"),
        ({"faq_result": ["q", "a"]}, "faq_result"),
    ],
)
async def test_wrong_answer_shapes_are_response_errors(
    quick: tuple[FakeAily, AilyClient], data: dict[str, Any], where: str
) -> None:
    """An answer of the wrong shape raises AilyResponseError naming the field."""
    fake, client = quick
    fake.inject("knowledge.ask", status=200, body={"code": 0, "msg": "ok", "data": data})
    with pytest.raises(AilyResponseError, match=rf"knowledge\.ask: .*{where}"):
        await client.knowledge.ask(APP, "q")


async def test_error_answers(quick: tuple[FakeAily, AilyClient]) -> None:
    """A 400 raises AilyInvalidParamsError; a 500 raises AilyServerError after one request
    (an ask may have been answered, so it is not sent again)."""
    fake, client = quick
    with pytest.raises(AilyInvalidParamsError, match=r"message\.content: is required"):
        await client.request("knowledge.ask", "POST", f"/apps/{APP}/knowledges/ask", body={})
    fake.reset_log()
    fake.inject("knowledge.ask", status=500)
    with pytest.raises(AilyServerError) as info:
        await client.knowledge.ask(APP, "refunds")
    assert info.value.http_status == 500
    assert fake.route_counts()["knowledge.ask"] == 1


async def test_ask_is_retried_when_it_certainly_did_not_land(
    quick: tuple[FakeAily, AilyClient],
) -> None:
    """A 429 (the gateway refused it) is waited out and the ask sent again."""
    fake, client = quick
    fake.knowledge.add_faq(APP, "hi", "hello")
    fake.inject("knowledge.ask", status=429, headers={"x-ogw-ratelimit-reset": "0"})
    answer = await client.knowledge.ask(APP, "hi")
    assert answer.text == "hello"
    assert fake.route_counts()["knowledge.ask"] == 2


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"question": None}, "question"),
        ({"question": ""}, "question"),
        ({"app_id": "../x"}, "app_id"),
        ({"data_asset_ids": ["ok", ""]}, "data_asset_ids[1]"),
        ({"data_asset_tag_ids": "tag_1"}, "data_asset_tag_ids"),
        ({"data_asset_tag_ids": [3]}, "data_asset_tag_ids[0]"),
    ],
)
async def test_bad_arguments_are_refused_before_sending(
    quick: tuple[FakeAily, AilyClient], kwargs: dict[str, Any], field: str
) -> None:
    """Bad arguments raise AilyValidationError naming the field; nothing is sent."""
    fake, client = quick
    arguments: dict[str, Any] = {"app_id": APP, "question": "q", **kwargs}
    with pytest.raises(AilyValidationError) as info:
        await client.knowledge.ask(arguments.pop("app_id"), arguments.pop("question"), **arguments)
    assert info.value.field == field
    assert fake.requests == []
