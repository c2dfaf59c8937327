"""Endpoint handlers of data assets: upload a file (multipart), create, get, list and delete
assets, and list their tags.

Assets import lazily: nothing runs in the background, an asset's ``connect_status`` is worked
out from the clock when it is read (see ``_assets_state`` for the statuses the fake assumes).
Boolean query values are read as Go's ``strconv.ParseBool`` would (``true``, ``True``, ``1``…:
the SDK sends ``True``/``False``). Unknown asset ids get HTTP 404 with code 2700001; ids that
do not exist in a list filter simply match nothing.
"""

from __future__ import annotations

import functools
import mimetypes
from collections.abc import Mapping
from typing import Any

from ._assets_state import AssetRecord, AssetStore, RecordedUpload, asset_wire, tag_wire
from ._clock import Clock
from ._context import Ctx, Handler
from ._multipart import parse_form
from ._paging import Entry, paged
from ._wire import invalid, not_found, object_field, str_field

__all__ = ["AssetHandlers", "app_of", "query_flag"]

_TRUE = frozenset({"1", "t", "T", "TRUE", "true", "True"})
_FALSE = frozenset({"0", "f", "F", "FALSE", "false", "False"})


def app_of(ctx: Ctx, store: AssetStore, clock: Clock) -> str:
    """The app the path names (at most 64 characters), noted as seen."""
    app_id = ctx.request.match_info["app_id"]
    if not app_id or len(app_id) > 64:
        raise invalid("app_id", "length must be between 1 and 64")
    store.see_app(app_id, clock.wall_ms(ctx.now))
    return app_id


def query_flag(ctx: Ctx, name: str) -> bool:
    """A boolean query parameter (absent: false)."""
    raw = ctx.request.query.get(name)
    if raw is None or raw in _FALSE:
        return False
    if raw in _TRUE:
        return True
    raise invalid(name, "must be a boolean")


def _query_str(ctx: Ctx, name: str) -> str | None:
    value = ctx.request.query.get(name)
    return value or None


def _source(setting: Mapping[str, Any], files: Mapping[str, RecordedUpload], app_id: str) -> Any:
    """``(title, content, mime_type, failure)`` of what the setting imports."""
    file = object_field(setting, "file", label="import_knowledge_setting.file")
    if file:
        token = str_field(file, "token", label="import_knowledge_setting.file.token")
        title = str_field(file, "title", label="import_knowledge_setting.file.title")
        upload = files.get(token or "")
        if upload is not None and upload.app_id == app_id:
            text = upload.data.decode("utf-8", "replace")
            return title or upload.filename or token, text, upload.mime_type, None
        content = str_field(file, "content", label="import_knowledge_setting.file.content")
        if content:
            return title or "content", content, "text/plain", None
        if token:
            return title or token, "", "", f"file token {token} not found"
        return title or "file", "", "", "nothing to import"
    for key, what in (
        ("lark_doc", "Feishu document"),
        ("lark_wiki_space", "Feishu wiki space"),
        ("lark_helpdesk", "Feishu helpdesk"),
    ):
        source = object_field(setting, key, label=f"import_knowledge_setting.{key}")
        if source:
            ref = next((str(v) for v in source.values() if isinstance(v, str) and v), key)
            return f"{what} {ref}", f"{what} {ref}.", "text/plain", None
    return "data asset", "", "", "nothing to import"


class AssetHandlers:
    """Handlers of the ``data_assets.*`` and ``data_asset_tags.list`` routes.

    Args:
        store: The knowledge records.
        clock: The fake's clock.
        import_duration: Seconds an asset stays ``PROCESSING`` after create.
    """

    def __init__(self, store: AssetStore, clock: Clock, import_duration: float) -> None:
        self._store = store
        self._clock = clock
        self._import_duration = import_duration

    def routes(self) -> dict[str, Handler]:
        """Map each route key this class serves to its handler."""
        return {
            "data_assets.upload_file": self.upload_file,
            "data_assets.create": self.create,
            "data_assets.get": self.get,
            "data_assets.list": self.list,
            "data_assets.delete": self.delete,
            "data_asset_tags.list": self.list_tags,
        }

    def _asset(self, ctx: Ctx, app_id: str) -> AssetRecord:
        asset_id = ctx.request.match_info["data_asset_id"]
        asset = self._store.assets.get(asset_id)
        if asset is None or asset.app_id != app_id:
            raise not_found("data_asset_id", f"data asset {asset_id}")
        return asset

    async def upload_file(self, ctx: Ctx) -> dict[str, Any]:
        """``POST /apps/{app}/data_assets/upload_file``: one multipart part named ``file``."""
        app_id = app_of(ctx, self._store, self._clock)
        header = ctx.request.headers.get("Content-Type", "")
        parts = parse_form(header, await ctx.request.read())
        file = next((part for part in parts if part.name == "file"), None)
        if file is None:
            raise invalid("file", "is required (a multipart part named 'file')")
        if not file.data:
            raise invalid("file", "is empty")
        mime = file.content_type
        if not mime or mime == "application/octet-stream":
            guessed = mimetypes.guess_type(file.filename or "")[0]
            mime = guessed or mime or "application/octet-stream"
        upload = RecordedUpload(
            app_id=app_id,
            token=self._store.new_id("file_"),
            filename=file.filename,
            content_type=file.content_type,
            mime_type=mime,
            data=file.data,
            tenant_type=_query_str(ctx, "tenant_type"),
        )
        self._store.files[upload.token] = upload
        self._store.uploads.append(upload)
        return {"file_info": {"token": upload.token, "mime_type": upload.mime_type}}

    async def create(self, ctx: Ctx) -> dict[str, Any]:
        """``POST /apps/{app}/data_assets``: the asset starts importing."""
        app_id = app_of(ctx, self._store, self._clock)
        connect_type = str_field(ctx.body, "connect_type", required=True)
        source_type = str_field(ctx.body, "source_type", required=True)
        setting = object_field(
            ctx.body, "import_knowledge_setting", label="import_knowledge_setting"
        )
        description = object_field(ctx.body, "description", label="description")
        if not all(isinstance(value, str) for value in description.values()):
            raise invalid("description", "must map strings to strings")
        title, content, mime, failure = _source(setting, self._store.files, app_id)
        asset = AssetRecord(
            id=self._store.new_id("asset_"),
            app_id=app_id,
            connect_type=connect_type or "",
            source_type=source_type or "",
            setting=setting,
            description=description,
            title=title,
            content=content,
            mime_type=mime,
            created=ctx.now,
            created_ms=self._clock.wall_ms(ctx.now),
            done_after=self._import_duration,
            failure=failure,
            seq=self._store.next_seq(),
            tenant_type=_query_str(ctx, "tenant_type"),
        )
        self._store.assets[asset.id] = asset
        self._store.created_assets += 1
        wire = asset_wire(asset, self._store, ctx.now, items=False, status=True, times_as_text=True)
        return {"data_asset": wire}

    async def get(self, ctx: Ctx) -> dict[str, Any]:
        """``GET /apps/{app}/data_assets/{id}``."""
        app_id = app_of(ctx, self._store, self._clock)
        asset = self._asset(ctx, app_id)
        items = query_flag(ctx, "with_data_asset_item")
        status = query_flag(ctx, "with_connect_status")
        wire = asset_wire(
            asset, self._store, ctx.now, items=items, status=status, times_as_text=True
        )
        return {"data_asset": wire}

    async def list(self, ctx: Ctx) -> dict[str, Any]:
        """``GET /apps/{app}/data_assets``: oldest first, filtered, paged as ``items``."""
        app_id = app_of(ctx, self._store, self._clock)
        query = ctx.request.query
        items = query_flag(ctx, "with_data_asset_item")
        status = query_flag(ctx, "with_connect_status")
        keyword = (query.get("keyword") or "").lower()
        ids = set(query.getall("data_asset_ids", []))
        tag_ids = set(query.getall("data_asset_tag_ids", []))
        entries: list[Entry] = []
        for asset in self._store.app_assets(app_id):
            if keyword and keyword not in f"{asset.title}\n{asset.content}".lower():
                continue
            if (ids and asset.id not in ids) or (tag_ids and not tag_ids & set(asset.tag_ids)):
                continue

            def render(asset: AssetRecord = asset) -> dict[str, Any]:
                return asset_wire(
                    asset, self._store, ctx.now, items=items, status=status, times_as_text=False
                )

            entries.append(((float(asset.seq),), render))
        return paged(query, "items", entries)

    async def delete(self, ctx: Ctx) -> dict[str, Any]:
        """``DELETE /apps/{app}/data_assets/{id}``: the asset as it was."""
        app_id = app_of(ctx, self._store, self._clock)
        asset = self._asset(ctx, app_id)
        wire = asset_wire(asset, self._store, ctx.now, items=False, status=True, times_as_text=True)
        del self._store.assets[asset.id]
        return {"data_asset": wire}

    async def list_tags(self, ctx: Ctx) -> dict[str, Any]:
        """``GET /apps/{app}/data_asset_tags``: oldest first, filtered, paged as ``items``."""
        app_id = app_of(ctx, self._store, self._clock)
        query = ctx.request.query
        keyword = (query.get("keyword") or "").lower()
        ids = set(query.getall("data_asset_tag_ids", []))
        entries: list[Entry] = [
            ((float(tag.seq),), functools.partial(tag_wire, tag))
            for tag in self._store.tags.values()
            if tag.app_id == app_id
            and (not keyword or keyword in tag.name.lower())
            and (not ids or tag.id in ids)
        ]
        return paged(query, "items", entries)
