"""The fake's knowledge records: uploaded files, data assets (and how their import goes on),
tags and FAQ entries, per app, and how each is written on the wire.

Choices of the fake where the SDK is silent (see ``FakeAily``'s docstring too):

- An asset's ``connect_status`` is ``"PROCESSING"`` for ``import_duration`` seconds after
  create, then ``"SUCCESS"``, or ``"FAILED"`` with a ``connect_failed_reason`` when there was
  nothing to import (no source, or a file ``token`` no upload of this app handed out).
- ``created_time`` / ``updated_time`` are milliseconds, written as strings in the create and
  get answers and as numbers in list answers (the SDK types them ``int``).
- An item's resources carry only the SDK's misspelt ``resouce_type``.
- ``label`` is the imported file's title or name (create takes no label), in ``zh_cn`` and
  ``en_us``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import attrs

from ._clock import Clock

__all__ = [
    "AssetRecord",
    "AssetStore",
    "FakeKnowledge",
    "RecordedUpload",
    "TagRecord",
    "asset_wire",
    "normalise_question",
    "tag_wire",
]

PROCESSING, SUCCESS, FAILED = "PROCESSING", "SUCCESS", "FAILED"


@attrs.frozen(kw_only=True)
class RecordedUpload:
    """One file uploaded to the fake (``FakeAily.uploads``): the multipart part as received.

    ``filename`` and ``content_type`` are those of the part (``None`` when it had none);
    ``mime_type`` is what the answer reported.
    """

    app_id: str
    token: str
    filename: str | None
    content_type: str | None
    mime_type: str
    data: bytes
    tenant_type: str | None = None

    @property
    def size(self) -> int:
        """Bytes received."""
        return len(self.data)


@attrs.define(eq=False)
class TagRecord:
    """A data asset tag (made with ``FakeAily.add_data_asset_tag``: the API has no call)."""

    id: str
    app_id: str
    name: str
    seq: int


@attrs.define(eq=False)
class AssetRecord:
    """A data asset, with what its import found and when it finishes."""

    id: str
    app_id: str
    connect_type: str
    source_type: str
    setting: dict[str, Any]
    description: dict[str, str]
    title: str
    content: str
    mime_type: str
    created: float
    created_ms: int
    done_after: float
    failure: str | None
    seq: int
    tag_ids: list[str] = attrs.Factory(list)
    tenant_type: str | None = None

    def status(self, now: float) -> str:
        """``PROCESSING`` until the import is done, then ``SUCCESS`` or ``FAILED``."""
        if now < self.created + self.done_after:
            return PROCESSING
        return FAILED if self.failure is not None else SUCCESS

    def usable(self, now: float) -> bool:
        """True once the import succeeded (the asset can answer questions)."""
        return self.status(now) == SUCCESS


class AssetStore:
    """Every knowledge record of one fake, with new ids from ``new_id``."""

    def __init__(self, new_id: Callable[[str], str], next_seq: Callable[[], int]) -> None:
        self.new_id = new_id
        self.next_seq = next_seq
        #: Uploaded files by token.
        self.files: dict[str, RecordedUpload] = {}
        self.uploads: list[RecordedUpload] = []
        self.assets: dict[str, AssetRecord] = {}
        self.tags: dict[str, TagRecord] = {}
        #: FAQ entries: ``(app_id, normalised question) -> (question, answer)``.
        self.faq: dict[tuple[str, str], tuple[str, str]] = {}
        self.created_assets = 0
        #: Apps the fake has seen, with the fake clock's wall time (ms) when first seen.
        self.apps_seen: dict[str, int] = {}

    def see_app(self, app_id: str, wall_ms: int) -> None:
        """Note that ``app_id`` was used (app stats list the apps seen)."""
        self.apps_seen.setdefault(app_id, wall_ms)

    def add_tag(self, app_id: str, name: str) -> TagRecord:
        """Make a tag in ``app_id``."""
        tag = TagRecord(self.new_id("tag_"), app_id, name, self.next_seq())
        self.tags[tag.id] = tag
        return tag

    def app_assets(self, app_id: str) -> list[AssetRecord]:
        """The app's assets, oldest first."""
        return [asset for asset in self.assets.values() if asset.app_id == app_id]


def normalise_question(text: str) -> str:
    """A question as FAQ entries are matched: lower case, runs of spaces as one."""
    return " ".join(text.lower().split())


class FakeKnowledge:
    """``FakeAily.knowledge``: the fake's data assets, uploads, tags and FAQ entries."""

    def __init__(self, store: AssetStore, clock: Clock) -> None:
        self._store = store
        self._clock = clock

    @property
    def uploads(self) -> list[RecordedUpload]:
        """Files uploaded through the API, oldest first (the parts as received)."""
        return list(self._store.uploads)

    @property
    def created_data_assets(self) -> int:
        """Data assets created through the API."""
        return self._store.created_assets

    def data_asset_ids(self, app_id: str | None = None) -> list[str]:
        """Ids of the data assets that exist now (of one app, or of all), oldest first."""
        assets = self._store.assets.values()
        return [a.id for a in assets if app_id is None or a.app_id == app_id]

    def get_data_asset(self, data_asset_id: str) -> dict[str, Any]:
        """A data asset as get sends it now, items and status included; ``KeyError`` if
        unknown."""
        asset = self._store.assets[data_asset_id]
        now = self._clock.now()
        return asset_wire(asset, self._store, now, items=True, status=True, times_as_text=True)

    def add_data_asset_tag(
        self, app_id: str, name: str, *, data_asset_ids: Sequence[str] = ()
    ) -> str:
        """Make a tag in ``app_id`` (the API has no call for it), put it on these assets, and
        return its id."""
        unknown = [i for i in data_asset_ids if i not in self._store.assets]
        if unknown:
            raise KeyError(f"unknown data assets: {unknown}")
        tag = self._store.add_tag(app_id, name)
        for asset_id in data_asset_ids:
            self._store.assets[asset_id].tag_ids.append(tag.id)
        return tag.id

    def add_faq(self, app_id: str, question: str, answer: str) -> None:
        """Answer ``question`` (case and spacing aside) in ``app_id`` with ``answer``."""
        self._store.faq[(app_id, normalise_question(question))] = (question, answer)

    def __repr__(self) -> str:
        return (
            f"<FakeKnowledge assets={len(self._store.assets)} "
            f"uploads={len(self._store.uploads)} tags={len(self._store.tags)}>"
        )


def tag_wire(tag: TagRecord) -> dict[str, Any]:
    """A tag as the API sends it."""
    return {"data_asset_tag_id": tag.id, "name": tag.name}


def asset_wire(
    asset: AssetRecord,
    store: AssetStore,
    now: float,
    *,
    items: bool,
    status: bool,
    times_as_text: bool,
) -> dict[str, Any]:
    """An asset as the API sends it at ``now``: ``items`` and ``connect_status`` only when
    asked for, times as strings (create, get) or numbers (list)."""
    label = {"zh_cn": asset.title, "en_us": asset.title}
    current = asset.status(now)
    updated = asset.created_ms
    if current != PROCESSING:
        updated += int(asset.done_after * 1000)
    wire: dict[str, Any] = {
        "data_asset_id": asset.id,
        "label": label,
        "description": dict(asset.description),
        "data_source_type": asset.source_type,
        "connect_type": asset.connect_type,
        "import_knowledge_setting": asset.setting,
        "tags": [tag_wire(store.tags[t]) for t in asset.tag_ids if t in store.tags],
        "created_time": str(asset.created_ms) if times_as_text else asset.created_ms,
        "updated_time": str(updated) if times_as_text else updated,
    }
    if status:
        wire["connect_status"] = current
        if current == FAILED:
            wire["connect_failed_reason"] = asset.failure
    if items:
        wire["items"] = [
            {
                "data_asset_item_id": f"{asset.id}_item",
                "api_name": f"item_{asset.seq}",
                "label": label,
                "description": dict(asset.description),
                "resources": [
                    {"resource_id": f"{asset.id}_res", "resouce_type": asset.source_type}
                ],
            }
        ]
    return wire
