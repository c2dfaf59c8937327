"""Typed, frozen views of data assets: the asset, its tags, items and resources, the uploaded
file, and the import settings a create takes (and an asset reports back).

Every field is optional in the SDK; the ids a further call needs (``data_asset_id``,
``data_asset_tag_id``, the file ``token``) are required here, so an answer without one is an
error rather than a model that cannot be used. ``label`` and ``description`` are string maps
(locale → text, by the look of them), compared but left out of the hash; ``created_time`` and
``updated_time`` are integers of a unit the SDK does not give, read from numbers or numeric
strings.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import attrs

from ._models import converter, empty_if_null, nullable, wire_field

__all__ = [
    "DataAsset",
    "DataAssetFile",
    "DataAssetItem",
    "DataAssetResource",
    "DataAssetTag",
    "KnowledgeChunkSetting",
    "KnowledgeFile",
    "KnowledgeHelpdesk",
    "KnowledgeImportSetting",
    "KnowledgeLarkDoc",
    "KnowledgeWikiSpace",
    "KnowledgeWikiSubDoc",
]


@attrs.frozen
class DataAssetTag:
    """A tag data assets carry (``data_asset_tag_id`` filters asks and lists)."""

    data_asset_tag_id: str
    name: str | None = None


@attrs.frozen
class DataAssetResource:
    """A resource behind a data asset item. The SDK also has a misspelt ``resouce_type``
    beside ``resource_type``: this reads either."""

    resource_id: str | None = None
    resource_type: str | None = None


@attrs.frozen
class DataAssetItem:
    """One item of a data asset (listed with ``with_items=True``)."""

    data_asset_item_id: str | None = None
    api_name: str | None = None
    label: dict[str, str] = attrs.field(factory=dict, hash=False)
    description: dict[str, str] = attrs.field(factory=dict, hash=False)
    resources: tuple[DataAssetResource, ...] = ()


@attrs.frozen(kw_only=True)
class KnowledgeChunkSetting:
    """How imported text is cut into chunks (values of the types are not in the SDK)."""

    rule_type: str | None = None
    separate_type: str | None = None
    size: int | None = None
    overlap: int | None = None


@attrs.frozen(kw_only=True)
class KnowledgeFile:
    """A file to import: the ``token`` and ``mime_type`` an upload returned, or a ``url`` or
    inline ``content``."""

    title: str | None = None
    token: str | None = None
    content: str | None = None
    mime_type: str | None = None
    url: str | None = None


@attrs.frozen(kw_only=True)
class KnowledgeLarkDoc:
    """A Feishu document to import (``type``: the kind of document)."""

    type: str | None = None
    token: str | None = None
    with_sub_docs: bool | None = None
    url: str | None = None


@attrs.frozen(kw_only=True)
class KnowledgeWikiSubDoc:
    """One document of a wiki space to import."""

    type: str | None = None
    token: str | None = None
    url: str | None = None


@attrs.frozen(kw_only=True)
class KnowledgeWikiSpace:
    """A Feishu wiki space (or some of its documents) to import."""

    space_id: str | None = None
    sub_docs: tuple[KnowledgeWikiSubDoc, ...] = ()
    url: str | None = None


@attrs.frozen(kw_only=True)
class KnowledgeHelpdesk:
    """A Feishu helpdesk to import."""

    helpdesk_id: str | None = None


@attrs.frozen(kw_only=True)
class KnowledgeImportSetting:
    """What a data asset imports: set the one source that matches the source type, and
    optionally how it is chunked."""

    chunk_setting: KnowledgeChunkSetting | None = None
    file: KnowledgeFile | None = None
    lark_doc: KnowledgeLarkDoc | None = None
    lark_wiki_space: KnowledgeWikiSpace | None = None
    lark_helpdesk: KnowledgeHelpdesk | None = None


@attrs.frozen
class DataAsset:
    """A knowledge source attached to an Aily app: a file, a Feishu doc, a wiki space, a
    helpdesk. ``connect_status`` (asked for with ``with_connect_status=True``) tells how its
    import is going; it finishes after create returns, so poll ``get`` to see it end."""

    data_asset_id: str
    label: dict[str, str] = attrs.field(factory=dict, hash=False)
    description: dict[str, str] = attrs.field(factory=dict, hash=False)
    data_source_type: str | None = None
    connect_type: str | None = None
    connect_status: str | None = None
    connect_failed_reason: str | None = None
    import_knowledge_setting: KnowledgeImportSetting | None = None
    tags: tuple[DataAssetTag, ...] = ()
    items: tuple[DataAssetItem, ...] = ()
    created_time: int | None = None
    updated_time: int | None = None


@attrs.frozen
class DataAssetFile:
    """An uploaded file: pass its ``token`` (and ``mime_type``) to a create as a
    :class:`KnowledgeFile`."""

    token: str
    mime_type: str | None = None


def import_setting_body(setting: KnowledgeImportSetting) -> dict[str, Any]:
    """The setting as a create body sends it: unset fields left out."""
    return attrs.asdict(setting, filter=lambda _, value: value is not None and value != ())


def _structure_resource(value: Any, _: type) -> DataAssetResource:
    if not isinstance(value, Mapping):
        raise ValueError(f"expected an object, got {type(value).__name__}")
    kind = wire_field(value, "resource_type", _OPTIONAL_STR, DataAssetResource)
    if kind is None:  # the SDK's second, misspelt field
        kind = wire_field(value, "resouce_type", _OPTIONAL_STR, DataAssetResource)
    return DataAssetResource(
        resource_id=wire_field(value, "resource_id", _OPTIONAL_STR, DataAssetResource),
        resource_type=kind,
    )


_OPTIONAL_STR: Any = str | None


converter.register_structure_hook(DataAssetResource, _structure_resource)
empty_if_null(
    tuple[DataAssetResource, ...],
    tuple[DataAssetTag, ...],
    tuple[DataAssetItem, ...],
    tuple[KnowledgeWikiSubDoc, ...],
)
nullable(
    KnowledgeChunkSetting,
    KnowledgeFile,
    KnowledgeLarkDoc,
    KnowledgeWikiSpace,
    KnowledgeHelpdesk,
    KnowledgeImportSetting,
)
