"""The ``aily ask`` and ``aily assets`` commands: ask an app's knowledge; upload, create, list,
get and delete its data assets."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any, Protocol

from aily_async import DataAsset

from ._common import EXIT_OK, UsageError, make_client, print_json

__all__ = [
    "Commands",
    "add_ask_command",
    "add_assets_command",
    "ask_command",
    "assets_create",
    "assets_delete",
    "assets_get",
    "assets_list",
    "assets_upload",
]


# -- aily ask -----------------------------------------------------------------------------------


async def ask_command(args: argparse.Namespace) -> int:
    """``aily ask APP QUESTION``: print the answer (a note on stderr when there is none)."""
    async with make_client(args) as client:
        answer = await client.knowledge.ask(
            args.app,
            args.question,
            data_asset_ids=args.asset or None,
            data_asset_tag_ids=args.tag or None,
        )
    if args.json:
        print_json(answer)
        return EXIT_OK
    if answer.text:
        print(answer.text)
    if answer.has_answer is False:
        print("aily: the knowledge base has no answer", file=sys.stderr)
    return EXIT_OK


# -- aily assets --------------------------------------------------------------------------------


def _label(asset: DataAsset) -> str:
    return next(iter(asset.label.values()), "")


async def assets_upload(args: argparse.Namespace) -> int:
    """``aily assets upload APP FILE``: print the file's token and MIME type."""
    if args.file == "-":
        raise UsageError("FILE must be a path (standard input is not supported)")
    async with make_client(args) as client:
        info = await client.data_assets.upload_file(
            args.app, args.file, filename=args.filename, content_type=args.content_type
        )
    if args.json:
        print_json(info)
    else:
        print(f"{info.token}\t{info.mime_type or ''}")
    return EXIT_OK


def _json_object(name: str, text: str | None) -> dict[str, Any] | None:
    """An option holding a JSON object, parsed (``None`` stays ``None``)."""
    if text is None:
        return None
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise UsageError(f"{name} is not valid JSON: {exc}") from None
    if not isinstance(value, dict):
        raise UsageError(f"{name} must be a JSON object, got {type(value).__name__}")
    return value


async def assets_create(args: argparse.Namespace) -> int:
    """``aily assets create APP``: create a data asset (from an uploaded file's token, or any
    import setting given as JSON); print its id (the asset with --json)."""
    setting = _json_object("--setting", args.setting)
    if args.file_token is not None:
        if setting is not None:
            raise UsageError("give --file-token or --setting, not both")
        file = {"token": args.file_token, "mime_type": args.mime_type, "title": args.title}
        setting = {"file": {key: value for key, value in file.items() if value is not None}}
    elif args.mime_type is not None or args.title is not None:
        raise UsageError("--mime-type and --title go with --file-token")
    async with make_client(args) as client:
        asset = await client.data_assets.create(
            args.app,
            connect_type=args.connect_type,
            source_type=args.source_type,
            import_knowledge_setting=setting,
            description=_json_object("--description", args.description),
        )
    if args.json:
        print_json(asset)
    else:
        print(asset.data_asset_id)
    return EXIT_OK


async def assets_list(args: argparse.Namespace) -> int:
    """``aily assets list APP``: one line (or JSON) per data asset."""
    async with make_client(args) as client:
        assets = [
            asset
            async for asset in client.data_assets.list(
                args.app,
                keyword=args.keyword,
                data_asset_ids=args.asset or None,
                data_asset_tag_ids=args.tag or None,
                with_items=args.items,
                with_connect_status=True,
            )
        ]
    if args.json:
        print_json(assets)
        return EXIT_OK
    for asset in assets:
        print(f"{asset.data_asset_id}\t{asset.connect_status or ''}\t{_label(asset)}")
    return EXIT_OK


async def assets_get(args: argparse.Namespace) -> int:
    """``aily assets get APP ID``: the data asset, with its status and items, as JSON."""
    async with make_client(args) as client:
        asset = await client.data_assets.get(
            args.app, args.data_asset_id, with_items=True, with_connect_status=True
        )
    print_json(asset)
    return EXIT_OK


async def assets_delete(args: argparse.Namespace) -> int:
    """``aily assets delete APP ID``: print the id deleted (or the asset, with --json)."""
    async with make_client(args) as client:
        asset = await client.data_assets.delete(args.app, args.data_asset_id)
    if args.json:
        print_json(asset)
    else:
        print(asset.data_asset_id)
    return EXIT_OK


# -- the parsers ----------------------------------------------------------------------------


def _filters(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--asset", action="append", metavar="ID", help="only this data asset (repeatable)"
    )
    parser.add_argument(
        "--tag", action="append", metavar="TAG_ID", help="only assets with this tag (repeatable)"
    )


class Commands(Protocol):
    """What ``parser.add_subparsers()`` returns, as far as these commands use it."""

    def add_parser(self, name: str, **options: Any) -> argparse.ArgumentParser:
        """Add the sub-command ``name``."""
        ...


def add_ask_command(commands: Commands, conn: argparse.ArgumentParser) -> None:
    """Add ``aily ask`` to the ``aily`` parser."""
    ask = commands.add_parser(
        "ask",
        parents=[conn],
        help="ask an app's knowledge base a question",
        description=(
            "Ask the knowledge base (the data assets) of Aily app APP a question and print the "
            "answer. With --json, the whole answer: status, FAQ entry, retrieved chunks."
        ),
    )
    ask.add_argument("app", metavar="APP", help="Aily app id (spring_…__c)")
    ask.add_argument("question", metavar="QUESTION", help="the question")
    _filters(ask)
    ask.set_defaults(handler=ask_command)


def add_assets_command(commands: Commands, conn: argparse.ArgumentParser) -> None:
    """Add ``aily assets upload|create|list|get|delete`` to the ``aily`` parser."""
    assets = commands.add_parser(
        "assets", help="upload, create, list, get or delete data assets"
    )
    sub = assets.add_subparsers(title="assets commands", metavar="COMMAND")
    upload = sub.add_parser(
        "upload",
        parents=[conn],
        help="upload a file for a data asset",
        description=(
            "Upload FILE (streamed) for a data asset of APP to import; print its token and MIME "
            "type (then: aily assets create APP --file-token TOKEN ...)."
        ),
    )
    upload.add_argument("app", metavar="APP", help="Aily app id")
    upload.add_argument("file", metavar="FILE", help="the file to upload")
    upload.add_argument("--filename", help="the name to send (default: FILE's base name)")
    upload.add_argument("--content-type", help="the MIME type (default: guessed from the name)")
    upload.set_defaults(handler=assets_upload)
    create = sub.add_parser(
        "create",
        parents=[conn],
        help="create a data asset",
        description=(
            "Create a data asset of APP and print its id; its import goes on after this "
            "returns (watch it with: aily assets get APP ID). The values of --connect-type "
            "and --source-type are the service's (the SDK documents none)."
        ),
    )
    create.add_argument("app", metavar="APP", help="Aily app id")
    create.add_argument("--connect-type", required=True, help="how the asset is connected")
    create.add_argument("--source-type", required=True, help="what kind of source it is")
    create.add_argument("--file-token", help="the token `aily assets upload` printed")
    create.add_argument("--mime-type", help="with --file-token: the file's MIME type")
    create.add_argument("--title", help="with --file-token: the file's title")
    create.add_argument(
        "--setting",
        metavar="JSON",
        help='the whole import setting as a JSON object, e.g. {"lark_doc": {"url": "..."}}',
    )
    create.add_argument(
        "--description", metavar="JSON", help='a JSON object such as {"zh_cn": "..."}'
    )
    create.set_defaults(handler=assets_create)
    listing = sub.add_parser(
        "list",
        parents=[conn],
        help="list an app's data assets",
        description="List APP's data assets: id, connect status and label, one per line.",
    )
    listing.add_argument("app", metavar="APP", help="Aily app id")
    listing.add_argument("--keyword", help="only assets matching this text")
    listing.add_argument("--items", action="store_true", help="with each asset's items")
    _filters(listing)
    listing.set_defaults(handler=assets_list)
    for name, summary, handler in (
        ("get", "describe one data asset (JSON, with status and items)", assets_get),
        ("delete", "delete one data asset", assets_delete),
    ):
        command = sub.add_parser(name, parents=[conn], help=summary, description=summary)
        command.add_argument("app", metavar="APP", help="Aily app id")
        command.add_argument("data_asset_id", metavar="ID", help="data asset id")
        command.set_defaults(handler=handler)
    assets.set_defaults(usage_of=assets)
