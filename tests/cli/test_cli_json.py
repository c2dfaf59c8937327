"""The command line for scripts: ``aily run get`` / ``aily run wait`` on a run made earlier,
``--json`` on every command (a skill's output decoded once), help text on every option; against
``aily fake-server --json`` in its own process."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from aily_async.cli import build_parser, main
from aily_async.testing import build_parser as fake_server_parser

APP = "spring_449d72db2f__c"


@pytest.fixture(scope="module")
def server_url() -> Iterator[str]:
    """``aily fake-server --port 0 --json`` in its own process; its URL from its JSON line."""
    process = subprocess.Popen(
        [sys.executable, "-m", "aily_async.cli", "fake-server", "--port", "0", "--json",
         "--run-duration", "0.3"],
        stdout=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    assert process.stdout is not None
    try:
        first = json.loads(process.stdout.readline())
        assert set(first) == {"url"}
        yield first["url"]
    finally:
        process.terminate()
        process.wait(10)
        process.stdout.close()


@pytest.fixture
def aily(
    server_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> Any:
    """Run ``aily ARGS`` in this process against the server: (exit status, stdout, stderr)."""
    monkeypatch.setenv("FEISHU_APP_ID", "cli_test")
    monkeypatch.setenv("FEISHU_APP_SECRET", "secret")
    monkeypatch.setenv("AILY_BASE_URL", server_url)

    def run(*args: str) -> tuple[int, str, str]:
        status = main(list(args))
        out, err = capsys.readouterr()
        return status, out, err

    return run


def test_run_get_and_run_wait_look_at_a_run_made_earlier(aily: Any) -> None:
    """A run created without waiting can be looked at (``run get``, a line or JSON) and
    waited for later (``run wait``, the answer or JSON); a wait that times out exits 1."""
    status, out, _ = aily("run", "--new-session", "--app", APP, "-m", "hi", "--json")
    assert status == 0
    run = json.loads(out)
    session, run_id = run["session_id"], run["id"]

    status, out, _ = aily("run", "get", session, run_id)
    assert status == 0
    fields = out.strip().split("\t")
    assert (fields[0], fields[2]) == (run_id, session)
    assert fields[1] in ("QUEUED", "IN_PROGRESS", "COMPLETED")

    status, out, _ = aily("run", "wait", session, run_id, "--timeout", "10", "--json")
    assert status == 0
    finished = json.loads(out)
    assert finished["run"]["status"] == "COMPLETED"
    assert finished["messages"]

    status, out, _ = aily("run", "get", session, run_id, "--json")
    assert json.loads(out)["status"] == "COMPLETED"

    status, out, _ = aily("run", "wait", session, run_id)
    assert status == 0
    assert out.strip()  # the answer's text

    _, out, _ = aily("run", session, "--app", APP, "-m", "again", "--json")
    status, _, err = aily("run", "wait", session, json.loads(out)["id"], "--timeout", "0.05")
    assert status == 1
    assert "run" in err


def test_skill_start_json_decodes_the_output_once(aily: Any) -> None:
    """``skill start --json``: ``output`` is the skill's JSON value, not a string of it."""
    status, out, _ = aily("skill", "start", APP, "skill_echo", "--query", "hi", "--json")
    assert status == 0
    result = json.loads(out)
    assert isinstance(result["output"], dict)
    assert result["output"]["query"] == "hi"


def test_batch_and_demo_summaries_are_json(aily: Any, tmp_path: Path) -> None:
    """``batch --json``: result lines on stdout, the summary one JSON object on stderr;
    ``demo --json``: the whole summary one JSON object on stdout."""
    rows = tmp_path / "rows.jsonl"
    rows.write_text('"a"\n"b"\n', encoding="utf-8")
    status, out, err = aily("batch", "skill", str(rows), "--app", APP, "--skill",
                            "skill_echo", "--json", "--no-progress")  # fmt: skip
    assert status == 0
    assert len([json.loads(line) for line in out.splitlines()]) == 2
    assert json.loads(err.strip().splitlines()[-1])["ok"] == 2

    status, out, _ = aily("demo", "--json", "--skills", "3", "--runs", "0", "--scale", "0.01",
                          "--no-progress")  # fmt: skip
    assert status == 0
    summary = json.loads(out)
    assert summary["items"] == 3
    assert summary["requests_by_call"]["skills.start"] == 3


def _leaves(
    parser: argparse.ArgumentParser, path: str
) -> Iterator[tuple[str, argparse.ArgumentParser]]:
    subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    if not subs:
        yield path, parser
    for action in subs:
        for name, sub in action.choices.items():
            yield from _leaves(sub, f"{path} {name}")


def test_every_option_has_help_and_every_command_json() -> None:
    """Each option and argument of each command (``fake-server`` and the run look-ups
    included) has a help text, and each command takes ``--json``."""
    # ``aily fake-server`` is handed to aily_async.testing's parser: that one is checked.
    leaves = [leaf for leaf in _leaves(build_parser(), "aily") if leaf[0] != "aily fake-server"]
    leaves.append(("aily fake-server", fake_server_parser()))
    no_help = [
        (path, action.option_strings or action.dest)
        for path, parser in leaves
        for action in parser._actions
        if not isinstance(action, argparse._HelpAction) and not action.help
    ]
    assert no_help == []
    # ``worker`` is a long-running service: what it prints is its log.
    no_json = [
        path
        for path, parser in leaves
        if path != "aily worker"
        and not any("--json" in action.option_strings for action in parser._actions)
    ]
    assert no_json == []
    paths = {path for path, _ in leaves}
    assert {"aily run-get", "aily run-wait", "aily demo"} <= paths
