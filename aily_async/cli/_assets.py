"""The ``aily ask`` and ``aily assets`` commands: ask an app's knowledge; upload, list, get and
delete its data assets."""

from __future__ import annotations

import argparse
import sys
from typing import Any, Protocol

from aily_async import DataAsset

from ._common import EXIT_OK, UsageError, make_client, print_json

__all__ = [
    "Commands",
    "add_ask_command",
    "add_assets_command",
    "ask_command",
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
    """Add ``aily assets upload|list|get|delete`` to the ``aily`` parser."""
    assets = commands.add_parser("assets", help="upload, list, get or delete data assets")
    sub = assets.add_subparsers(title="assets commands", metavar="COMMAND")
    upload = sub.add_parser(
        "upload",
        parents=[conn],
        help="upload a file for a data asset",
        description=(
            "Upload FILE (streamed) for a data asset of APP to import; print its token and MIME "
            "type (then create the asset with them, from Python)."
        ),
    )
    upload.add_argument("app", metavar="APP", help="Aily app id")
    upload.add_argument("file", metavar="FILE", help="the file to upload")
    upload.add_argument("--filename", help="the name to send (default: FILE's base name)")
    upload.add_argument("--content-type", help="the MIME type (default: guessed from the name)")
    upload.set_defaults(handler=assets_upload)
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
