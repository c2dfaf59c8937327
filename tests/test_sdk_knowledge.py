"""The official SDK (lark-oapi) drives FakeAily's knowledge, data asset and app stats calls:
its requests are understood (its multipart form without a filename, ``True``/``False``
query flags, repeated keys) and every answer decodes on its side."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import pytest

from aily_async.testing import FakeAily, RunPlan

lark = pytest.importorskip("lark_oapi")
v1 = pytest.importorskip("lark_oapi.api.aily.v1")

APP = "spring_449d72db2f__c"
R = TypeVar("R")


def _sdk(fake: FakeAily) -> Any:
    return (
        lark.Client.builder()
        .app_id("cli_sdk")
        .app_secret("sdk-secret")
        .domain(fake.url)
        .log_level(lark.LogLevel.ERROR)
        .build()
    )


async def _call(fn: Callable[..., R], *args: Any) -> R:
    """Run one blocking SDK call in a thread; the fake keeps serving on the loop."""
    return await asyncio.to_thread(fn, *args)


def _ok(response: Any) -> Any:
    assert response.success(), (response.code, response.msg)
    assert response.data is not None
    return response.data


async def test_the_official_sdk_drives_knowledge_assets_and_stats(tmp_path: Path) -> None:
    """Upload (the SDK's multipart), create, get, list, tags, ask, stats and delete through
    lark-oapi: each answer succeeds and its data fields decode."""
    async with FakeAily(import_duration=0, run_script=RunPlan(queued=0, duration=0)) as fake:
        sdk = _sdk(fake)
        api = sdk.aily.v1
        path = tmp_path / "policy.txt"
        path.write_bytes(b"Refunds take 7 days.\nShipping is free over 50 euros.\n")

        with path.open("rb") as file:
            body = v1.UploadFileAppDataAssetRequestBody.builder().file(file).build()
            request = (
                v1.UploadFileAppDataAssetRequest.builder().app_id(APP).request_body(body).build()
            )
            uploaded = _ok(await _call(api.app_data_asset.upload_file, request))
        assert uploaded.file_info.token.startswith("file_")
        assert uploaded.file_info.mime_type
        assert fake.knowledge.uploads[-1].data == path.read_bytes()
        assert fake.knowledge.uploads[-1].filename is None  # the SDK's blocking form

        setting = (
            v1.DataAssetImportKnowledgeSetting.builder()
            .file(
                v1.DataAssetImportKnowledgeFile.builder()
                .token(uploaded.file_info.token)
                .title("Policy")
                .build()
            )
            .build()
        )
        create_body = (
            v1.CreateAppDataAssetRequestBody.builder()
            .connect_type("direct")
            .source_type("file")
            .import_knowledge_setting(setting)
            .description({"en_us": "Returns"})
            .build()
        )
        create = (
            v1.CreateAppDataAssetRequest.builder()
            .app_id(APP)
            .tenant_type("inner")
            .request_body(create_body)
            .build()
        )
        created = _ok(await _call(api.app_data_asset.create, create)).data_asset
        asset_id = created.data_asset_id
        assert created.label["en_us"] == "Policy"
        assert created.import_knowledge_setting.file.token == uploaded.file_info.token

        get = (
            v1.GetAppDataAssetRequest.builder()
            .app_id(APP)
            .data_asset_id(asset_id)
            .with_data_asset_item(True)
            .with_connect_status(True)
            .build()
        )
        got = _ok(await _call(api.app_data_asset.get, get)).data_asset
        assert got.connect_status == "SUCCESS"
        assert got.items[0].resources[0].resouce_type == "file"
        assert fake.requests[-1].query["with_connect_status"] == "True"

        tag = fake.knowledge.add_data_asset_tag(APP, "policies", data_asset_ids=[asset_id])
        listing = (
            v1.ListAppDataAssetRequest.builder()
            .app_id(APP)
            .page_size(1)
            .data_asset_ids([asset_id, "asset_other"])
            .data_asset_tag_ids([tag])
            .with_connect_status(False)
            .build()
        )
        listed = _ok(await _call(api.app_data_asset.list, listing))
        assert [a.data_asset_id for a in listed.items] == [asset_id]
        assert listed.has_more is False
        assert isinstance(listed.items[0].created_time, int)

        tags_request = v1.ListAppDataAssetTagRequest.builder().app_id(APP).keyword("polic").build()
        tags = _ok(await _call(api.app_data_asset_tag.list, tags_request))
        assert [(t.data_asset_tag_id, t.name) for t in tags.items] == [(tag, "policies")]

        question = v1.AilyKnowledgeMessage.builder().content("How long for refunds?").build()
        ask_body = (
            v1.AskAppKnowledgeRequestBody.builder()
            .message(question)
            .data_asset_ids([asset_id])
            .data_asset_tag_ids([tag])
            .build()
        )
        ask = v1.AskAppKnowledgeRequest.builder().app_id(APP).request_body(ask_body).build()
        answer = _ok(await _call(api.app_knowledge.ask, ask))
        assert answer.has_answer is True
        assert answer.message.content == "Refunds take 7 days."
        assert answer.process_data.chunks == ["Refunds take 7 days."]
        assert answer.status == "SUCCESS"
        assert answer.finish_type == "ANSWER"

        fake.knowledge.add_faq(APP, "hello?", "Hi there.")
        faq_body = (
            v1.AskAppKnowledgeRequestBody.builder()
            .message(v1.AilyKnowledgeMessage.builder().content("Hello?").build())
            .build()
        )
        faq_request = v1.AskAppKnowledgeRequest.builder().app_id(APP).request_body(faq_body)
        faq = _ok(await _call(api.app_knowledge.ask, faq_request.build()))
        assert (faq.faq_result.question, faq.faq_result.answer) == ("hello?", "Hi there.")

        stats_request = (
            v1.ListTenantAppStatRequest.builder()
            .start_at("0")
            .end_at("86400")
            .filter_type("all")
            .page_size(10)
            .build()
        )
        stats = _ok(await _call(api.tenant_app_stat.list, stats_request))
        assert [s.id for s in stats.items] == [APP]
        assert stats.items[0].owner.open_id == "ou_fake_owner"
        assert stats.items[0].total_credit_usage == "0.0"  # kept as sent, a string

        delete = v1.DeleteAppDataAssetRequest.builder().app_id(APP).data_asset_id(asset_id)
        deleted = _ok(await _call(api.app_data_asset.delete, delete.build())).data_asset
        assert deleted.data_asset_id == asset_id
        missing = await _call(api.app_data_asset.get, get)
        assert not missing.success()
        assert missing.code == 2700001
