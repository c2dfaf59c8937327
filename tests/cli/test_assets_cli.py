"""``aily ask`` and ``aily assets upload|create|list|get|delete`` against a FakeAily on a
thread: what they print, ``--json``, and the exit statuses and error style of the other
commands."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from test_cli import ThreadedFake, aily, assert_clean_error, env

from aily_async.cli import main

APP = "spring_449d72db2f__c"


@pytest.fixture
def server(monkeypatch: pytest.MonkeyPatch) -> Iterator[ThreadedFake]:
    """A FakeAily on a thread whose assets import at once, and the environment of a user with
    credentials pointed at it."""
    with ThreadedFake(import_duration=0) as threaded:
        for name, value in env(threaded.url).items():
            monkeypatch.setenv(name, value)
        yield threaded


def _run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    status = main(list(args))
    captured = capsys.readouterr()
    return status, captured.out, captured.err


@pytest.mark.parametrize(
    "command",
    [
        ["ask"],
        ["assets"],
        ["assets", "upload"],
        ["assets", "create"],
        ["assets", "list"],
        ["assets", "get"],
    ],
    ids=" ".join,
)
def test_help(command: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    """The new commands answer ``--help`` with their usage and exit status 0."""
    with pytest.raises(SystemExit) as exited:
        main([*command, "--help"])
    assert exited.value.code == 0
    assert capsys.readouterr().out.startswith("usage: aily")


def test_upload_list_get_ask_delete(
    server: ThreadedFake, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Upload prints the token and type; create (from that token) prints the new id; list
    prints id, status and label; get prints JSON; ask prints the answer (JSON with --json);
    delete prints the id."""
    path = tmp_path / "policy.txt"
    path.write_text("Refunds take 7 days.\n")
    status, out, _ = _run(capsys, "assets", "upload", APP, str(path), "--no-throttle")
    assert status == 0
    token, mime = out.strip().split("\t")
    assert mime == "text/plain"
    assert server.fake.knowledge.uploads[-1].filename == "policy.txt"

    status, out, _ = _run(
        capsys, "assets", "upload", APP, str(path), "--json", "--filename", "p.md"
    )
    assert json.loads(out)["mime_type"] == "text/markdown"

    status, out, _ = _run(
        capsys, "assets", "create", APP, "--connect-type", "direct", "--source-type", "file",
        "--file-token", token, "--title", "Policy", "--description", '{"zh_cn": "退款"}',
    )  # fmt: skip
    assert status == 0
    asset_id = out.strip()
    created = server.fake.requests[-1]
    assert created.route == "data_assets.create"
    assert created.json == {
        "connect_type": "direct",
        "source_type": "file",
        "import_knowledge_setting": {"file": {"token": token, "title": "Policy"}},
        "description": {"zh_cn": "退款"},
    }
    status, out, _ = _run(
        capsys, "assets", "create", APP, "--connect-type", "direct", "--source-type", "file",
        "--file-token", token, "--mime-type", "text/plain", "--json",
    )  # fmt: skip
    assert status == 0
    second = json.loads(out)["data_asset_id"]
    assert server.fake.requests[-1].json["import_knowledge_setting"] == {
        "file": {"token": token, "mime_type": "text/plain"}
    }
    status, out, _ = _run(capsys, "assets", "delete", APP, second)
    assert (status, out) == (0, f"{second}\n")

    status, out, _ = _run(capsys, "assets", "list", APP)
    assert (status, out) == (0, f"{asset_id}\tSUCCESS\tPolicy\n")
    status, out, _ = _run(capsys, "assets", "list", APP, "--json", "--items", "--keyword", "refund")
    (listed,) = json.loads(out)
    assert listed["data_asset_id"] == asset_id
    assert listed["items"]

    status, out, _ = _run(capsys, "assets", "get", APP, asset_id)
    assert json.loads(out)["connect_status"] == "SUCCESS"

    status, out, err = _run(capsys, "ask", APP, "How long do refunds take?", "--asset", asset_id)
    assert (status, out, err) == (0, "Refunds take 7 days.\n", "")
    status, out, _ = _run(capsys, "ask", APP, "refunds", "--json")
    assert json.loads(out)["process"]["chunks"] == ["Refunds take 7 days."]
    status, out, err = _run(capsys, "ask", APP, "zebra")
    assert status == 0
    assert "no answer" in err

    status, out, _ = _run(capsys, "assets", "delete", APP, asset_id)
    assert (status, out) == (0, f"{asset_id}\n")
    assert server.fake.knowledge.data_asset_ids() == []


def test_errors_exit_like_the_other_commands(server: ThreadedFake, tmp_path: Path) -> None:
    """An API error exits 1 with the call and the log id; a bad id or a missing file is a
    usage error (2); no traceback (a real subprocess)."""
    proc = aily("assets", "get", APP, "asset_missing", environ=env(server.url))
    assert_clean_error(proc, 1, r"data_assets\.get: .*code 2700001, http 404, log_id \w+")
    proc = aily("assets", "delete", APP, "a/b", environ=env(server.url))
    assert_clean_error(proc, 2, r"data_asset_id must not contain '/'")
    proc = aily("assets", "upload", APP, str(tmp_path / "nope.txt"), environ=env(server.url))
    assert_clean_error(proc, 2, r"file must be a readable file")
    proc = aily("ask", APP, "", environ=env(server.url))
    assert_clean_error(proc, 2, r"question must not be empty")
    create = ("assets", "create", APP, "--connect-type", "c", "--source-type", "s")
    proc = aily(*create, "--setting", "[1]", environ=env(server.url))
    assert_clean_error(proc, 2, r"--setting must be a JSON object, got list")
    proc = aily(*create, "--file-token", "t", "--setting", "{}", environ=env(server.url))
    assert_clean_error(proc, 2, r"give --file-token or --setting, not both")
    proc = aily(*create, "--title", "T", environ=env(server.url))
    assert_clean_error(proc, 2, r"--mime-type and --title go with --file-token")
    assert all(r.route == "data_assets.get" for r in server.fake.requests if r.route != "auth")
