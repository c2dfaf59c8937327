"""``client.data_assets`` and ``client.data_asset_tags``: an Aily app's knowledge sources.

Upload a file (``upload_file``, a streamed multipart body, see :mod:`aily_async._uploads`),
create a data asset that imports it (or a Feishu doc, wiki space, helpdesk), watch its
``connect_status`` with ``get``, list, delete; list the tags assets carry. The models are in
:mod:`aily_async._data_asset_models`.

Booleans go in the query as ``true`` and are left out when false; the SDK sends Python's
``True``/``False`` spelling, which the service evidently reads too. ``tenant_type`` is passed on
as given (its values are not in the SDK). No quota is documented for these calls: each gets the
client's default bucket for "every other call" (``Limits``: 1000 per minute).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterable, Mapping
from typing import Any

from multidict import MultiDict

from . import _validation as v
from ._data_asset_models import (
    DataAsset,
    DataAssetFile,
    DataAssetTag,
    KnowledgeImportSetting,
    import_setting_body,
)
from ._errors import AilyValidationError
from ._resources import Resource, model, pages
from ._uploads import FileSource, Upload

__all__ = ["DataAssetTags", "DataAssets"]


class DataAssets(Resource):
    """Data assets: the knowledge sources of an Aily app."""

    __slots__ = ()

    async def upload_file(
        self,
        app_id: str,
        file: FileSource,
        *,
        filename: str | None = None,
        content_type: str | None = None,
        tenant_type: str | None = None,
        timeout: float | None = None,
    ) -> DataAssetFile:
        """Upload a file for a data asset to import; returns its ``token`` and ``mime_type``
        (then :meth:`create` with a :class:`KnowledgeFile` holding them).

        ``file``: a path, bytes, or a file object opened in binary mode (read from where it
        stands, never closed). A path or file object is streamed in chunks, never read whole
        into memory. ``filename`` defaults to the path's (or the file object's) base name, else
        ``"file"``; ``content_type`` is guessed from it (``application/octet-stream`` when
        unknown). An upload may have effects, so it is sent again only when it certainly did
        not arrive (the file is rewound; a file object that cannot seek is not sent twice).
        """
        call = "data_assets.upload_file"
        aid = v.app_id(call, app_id)
        params = _tenant(call, tenant_type)
        upload = Upload(call, file, filename=filename, content_type=content_type)
        async with upload:
            data = await self._transport.request(
                call,
                "POST",
                f"/apps/{aid}/data_assets/upload_file",
                form=upload.form,
                params=params,
                safety="unsafe",
                timeout=timeout,
            )
        return model(call, data, "file_info", DataAssetFile)

    async def create(
        self,
        app_id: str,
        *,
        connect_type: str,
        source_type: str,
        import_knowledge_setting: KnowledgeImportSetting | Mapping[str, Any] | None = None,
        description: Mapping[str, str] | None = None,
        tenant_type: str | None = None,
        timeout: float | None = None,
    ) -> DataAsset:
        """Create a data asset (its import goes on after this returns: poll :meth:`get` with
        ``with_connect_status=True``). ``description`` is a map such as ``{"zh_cn": "…"}``.
        No idempotency key exists, so a failed create is sent again only when it certainly
        did not arrive."""
        call = "data_assets.create"
        aid = v.app_id(call, app_id)
        body: dict[str, Any] = {
            "connect_type": v.text(call, "connect_type", connect_type),
            "source_type": v.text(call, "source_type", source_type),
        }
        if import_knowledge_setting is not None:
            body["import_knowledge_setting"] = _setting(call, import_knowledge_setting)
        if description is not None:
            body["description"] = _str_map(call, "description", description)
        data = await self._transport.request(
            call,
            "POST",
            f"/apps/{aid}/data_assets",
            body=body,
            params=_tenant(call, tenant_type),
            safety="unsafe",
            timeout=timeout,
        )
        return model(call, data, "data_asset", DataAsset)

    async def get(
        self,
        app_id: str,
        data_asset_id: str,
        *,
        with_items: bool = False,
        with_connect_status: bool = False,
        tenant_type: str | None = None,
        timeout: float | None = None,
    ) -> DataAsset:
        """Fetch one data asset, with its ``items`` and/or its ``connect_status`` if asked."""
        call = "data_assets.get"
        aid = v.app_id(call, app_id)
        did = v.path_id(call, "data_asset_id", data_asset_id)
        params = _flags(call, with_items, with_connect_status)
        params.extend(_tenant(call, tenant_type))
        data = await self._transport.request(
            call, "GET", f"/apps/{aid}/data_assets/{did}", params=params, timeout=timeout
        )
        return model(call, data, "data_asset", DataAsset)

    def list(
        self,
        app_id: str,
        *,
        keyword: str | None = None,
        data_asset_ids: Iterable[str] | None = None,
        data_asset_tag_ids: Iterable[str] | None = None,
        with_items: bool = False,
        with_connect_status: bool = False,
        page_size: int | None = None,
        timeout: float | None = None,
    ) -> AsyncIterator[DataAsset]:
        """Iterate over the app's data assets (all pages), optionally those matching
        ``keyword``, these ids, or carrying these tags."""
        call = "data_assets.list"
        aid = v.app_id(call, app_id)
        params = _flags(call, with_items, with_connect_status)
        params.extend(_filters(call, keyword, "data_asset_ids", data_asset_ids, page_size))
        params.extend(_ids(call, "data_asset_tag_ids", data_asset_tag_ids))
        path = f"/apps/{aid}/data_assets"
        return pages(self._transport, call, path, "items", DataAsset, params, timeout=timeout)

    async def delete(
        self,
        app_id: str,
        data_asset_id: str,
        *,
        tenant_type: str | None = None,
        timeout: float | None = None,
    ) -> DataAsset:
        """Delete a data asset and return it as it was. Deleting is harmless to repeat, so it
        is retried; when a retry finds the asset already gone (an earlier attempt deleted it),
        the result holds only its ``data_asset_id``."""
        call = "data_assets.delete"
        aid = v.app_id(call, app_id)
        did = v.path_id(call, "data_asset_id", data_asset_id)
        data = await self._transport.request(
            call,
            "DELETE",
            f"/apps/{aid}/data_assets/{did}",
            params=_tenant(call, tenant_type),
            done_if_gone=True,
            timeout=timeout,
        )
        if not data:
            return DataAsset(data_asset_id=data_asset_id)
        return model(call, data, "data_asset", DataAsset)


class DataAssetTags(Resource):
    """The tags of an app's data assets."""

    __slots__ = ()

    def list(
        self,
        app_id: str,
        *,
        keyword: str | None = None,
        data_asset_tag_ids: Iterable[str] | None = None,
        page_size: int | None = None,
        timeout: float | None = None,
    ) -> AsyncIterator[DataAssetTag]:
        """Iterate over the app's data asset tags (all pages), optionally those matching
        ``keyword`` or with these ids."""
        call = "data_asset_tags.list"
        aid = v.app_id(call, app_id)
        params = _filters(call, keyword, "data_asset_tag_ids", data_asset_tag_ids, page_size)
        path = f"/apps/{aid}/data_asset_tags"
        return pages(self._transport, call, path, "items", DataAssetTag, params, timeout=timeout)


# -- arguments --------------------------------------------------------------------------------


def _tenant(call: str, tenant_type: object) -> MultiDict[str]:
    params: MultiDict[str] = MultiDict()
    if tenant_type is not None:
        params["tenant_type"] = v.text(call, "tenant_type", tenant_type)
    return params


def _flags(call: str, with_items: object, with_connect_status: object) -> MultiDict[str]:
    params: MultiDict[str] = MultiDict()
    if v.flag(call, "with_items", with_items):
        params["with_data_asset_item"] = "true"
    if v.flag(call, "with_connect_status", with_connect_status):
        params["with_connect_status"] = "true"
    return params


def _ids(call: str, field: str, ids: object) -> MultiDict[str]:
    """A list filter: the key repeated once per id (``a=1&a=2``), as the SDK sends it."""
    params: MultiDict[str] = MultiDict()
    if ids is not None:
        for item in v.text_list(call, field, ids):
            params.add(field, item)
    return params


def _filters(
    call: str, keyword: object, field: str, ids: object, page_size: object
) -> MultiDict[str]:
    params: MultiDict[str] = MultiDict()
    if keyword is not None:
        params["keyword"] = v.text(call, "keyword", keyword)
    params.extend(_ids(call, field, ids))
    if page_size is not None:
        params["page_size"] = str(v.positive_int(call, "page_size", page_size))
    return params


def _str_map(call: str, field: str, value: object) -> dict[str, str]:
    if not isinstance(value, Mapping) or not all(
        isinstance(k, str) and isinstance(text, str) for k, text in value.items()
    ):
        raise AilyValidationError(
            field, "must be a map of strings to strings", call=call, got=type(value).__name__
        )
    return dict(value)


def _setting(call: str, value: object) -> dict[str, Any]:
    field = "import_knowledge_setting"
    if isinstance(value, KnowledgeImportSetting):
        return import_setting_body(value)
    if not isinstance(value, Mapping) or not all(isinstance(k, str) for k in value):
        raise AilyValidationError(
            field,
            "must be a KnowledgeImportSetting or a dict",
            call=call,
            got=type(value).__name__,
        )
    try:
        json.dumps(value, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise AilyValidationError(field, f"must be JSON-serialisable ({exc})", call=call) from None
    return dict(value)
