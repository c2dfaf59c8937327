"""The ``aily`` command line, run as a user runs it: a subprocess against a FakeAily."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from aily_async.cli import main
from aily_async.testing import FakeAily, SkillRequest

APP = "spring_449d72db2f__c"
SKILL = "skill_echo"
CLI = [sys.executable, "-m", "aily_async.cli"]


class ThreadedFake:
    """A FakeAily served by its own event loop on a thread, so subprocesses can call it while
    the test reads its counters."""

    def __init__(self, **options: Any) -> None:
        self.loop = asyncio.new_event_loop()
        self.fake = FakeAily(**options)
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)

    def __enter__(self) -> ThreadedFake:
        self.thread.start()
        asyncio.run_coroutine_threadsafe(self.fake.start(), self.loop).result(10)
        return self

    def __exit__(self, *exc: object) -> None:
        asyncio.run_coroutine_threadsafe(self.fake.close(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()

    @property
    def url(self) -> str:
        return self.fake.url

    def call(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        """Run ``fn`` on the server's loop (for ``inject`` and friends)."""

        async def run() -> Any:
            return fn(*args, **kwargs)

        return asyncio.run_coroutine_threadsafe(run(), self.loop).result(10)


class SlowSkill:
    """Counts starts per query; each takes ``delay`` seconds."""

    def __init__(self, delay: float = 0.0) -> None:
        self.delay = delay
        self.starts: Counter[str] = Counter()

    async def __call__(self, request: SkillRequest) -> str:
        self.starts[request.query or ""] += 1
        await asyncio.sleep(self.delay)
        return json.dumps({"echo": request.query})


@pytest.fixture
def server() -> Iterator[ThreadedFake]:
    """A FakeAily on a thread."""
    with ThreadedFake() as threaded:
        yield threaded


def env(base_url: str | None = None, **extra: str) -> dict[str, str]:
    """The environment of a user with credentials (and the fake's URL)."""
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("FEISHU_", "AILY_"))}
    environ.update(FEISHU_APP_ID="cli_test", FEISHU_APP_SECRET="test-secret")
    if base_url is not None:
        environ["AILY_BASE_URL"] = base_url
    environ.update(extra)
    return environ


def aily(
    *args: str, environ: dict[str, str] | None = None, stdin: str | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    """Run ``aily ARGS`` and capture what it prints."""
    return subprocess.run(
        [*CLI, *args],
        env=environ if environ is not None else env(),
        input=stdin,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def records(path: Path) -> list[dict[str, Any]]:
    """The item records of a results file (its header line left out), split at ``\n``."""
    if not path.exists():
        return []
    lines = [json.loads(line) for line in path.read_bytes().split(b"\n")[:-1] if line.strip()]
    return [line for line in lines if "key" in line]


def assert_clean_error(proc: subprocess.CompletedProcess[str], status: int, pattern: str) -> None:
    """Exit status ``status``, a message matching ``pattern`` on stderr, and no traceback."""
    assert proc.returncode == status, (proc.returncode, proc.stdout, proc.stderr)
    assert re.search(pattern, proc.stderr), proc.stderr
    assert "Traceback" not in proc.stderr


@pytest.mark.parametrize(
    "command",
    [
        [],
        ["demo"],
        ["skill"],
        ["skill", "start"],
        ["skill", "list"],
        ["skill", "get"],
        ["run"],
        ["batch"],
        ["batch", "skill"],
        ["batch", "run"],
        ["fake-server"],
    ],
    ids=lambda command: " ".join(command) or "aily",
)
def test_help_everywhere(command: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    """Every command and sub-command answers ``--help`` with its usage and exit status 0."""
    with pytest.raises(SystemExit) as exited:
        main([*command, "--help"])
    assert exited.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: aily"), out
    assert "--help" in out


def test_bare_aily_prints_the_commands_and_exits_2() -> None:
    """``aily`` alone (a real subprocess) lists the commands on stderr, exit status 2."""
    bare = aily()
    assert bare.returncode == 2
    for command in ("demo", "skill", "run", "batch", "fake-server"):
        assert command in bare.stderr


def test_missing_credentials_exit_2_with_a_hint(server: ThreadedFake) -> None:
    """Without FEISHU_APP_ID/FEISHU_APP_SECRET a command says which variable is missing and
    exits 2, without a traceback or a request."""
    environ = env(server.url)
    del environ["FEISHU_APP_SECRET"]
    proc = aily("skill", "start", APP, SKILL, "--query", "hi", environ=environ)
    assert_clean_error(proc, 2, r"no credentials: set FEISHU_APP_SECRET")
    assert server.fake.requests == []


def test_bad_json_option_exits_2(server: ThreadedFake) -> None:
    """A ``--input`` that is not JSON is a usage error (2) caught before any request."""
    proc = aily("skill", "start", APP, SKILL, "--input", "{row: 1}", environ=env(server.url))
    assert_clean_error(proc, 2, r"--input is not valid JSON")
    assert server.fake.requests == []


def test_skill_start_prints_the_output(server: ThreadedFake) -> None:
    """``aily skill start`` prints the skill's output as indented JSON, or the whole result
    with ``--json``."""
    proc = aily(
        "skill", "start", APP, SKILL, "--query", "hello", "--input", '{"row": 7}',
        environ=env(server.url),
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    output = json.loads(proc.stdout)
    assert output["query"] == "hello"
    assert output["input"] == {"row": 7}

    proc = aily("skill", "start", APP, SKILL, "--json", environ=env(server.url))
    assert json.loads(proc.stdout)["status"] == "success"


def test_api_error_exits_1_with_the_log_id(server: ThreadedFake) -> None:
    """An error from the service (a session that does not exist) exits 1 with the call, the
    code and the log id, without a traceback; a malformed id is a usage error (2)."""
    proc = aily(
        "run", "session_0123456789abcdef", "--app", APP, "-m", "hi", environ=env(server.url)
    )
    assert_clean_error(proc, 1, r"messages\.create: .*code 2700001, http 404, log_id \w+")

    proc = aily("run", "not-a-session", "--app", APP, environ=env(server.url))
    assert_clean_error(proc, 2, r"session_id must match")


def test_run_new_session_with_and_without_wait(server: ThreadedFake) -> None:
    """``aily run --new-session --wait`` prints the app's answer; without ``--wait`` it prints
    the run id, its status and the session; both sessions and runs exist server-side."""
    proc = aily(
        "run", "--new-session", "--app", APP, "-m", "hello", "--wait", environ=env(server.url)
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "Echo: hello"

    proc = aily("run", "--new-session", "--app", APP, "-m", "later", environ=env(server.url))
    assert proc.returncode == 0, proc.stderr
    run_id, status, session_id = proc.stdout.split()
    assert run_id.startswith("run_")
    assert status == "QUEUED"
    assert server.fake.run_count(session_id) == 1

    proc = aily("run", "--app", APP, environ=env(server.url))
    assert_clean_error(proc, 2, r"give a SESSION id or --new-session")


def test_batch_skill_checkpoints_and_a_rerun_skips_done_items(tmp_path: Path) -> None:
    """``aily batch skill FILE --out R`` writes one line per item; run again it starts no skill
    and says the items were already done."""
    skill = SlowSkill()
    inputs = tmp_path / "in.jsonl"
    inputs.write_text("".join(json.dumps(f"q{n}") + "\n" for n in range(12)))
    out = tmp_path / "results.jsonl"
    with ThreadedFake(skill_handler=skill) as server:
        args = ["batch", "skill", str(inputs), "--app", APP, "--skill", SKILL, "--out", str(out)]
        args.append("--no-throttle")  # a local fake: no need to pace at 100 calls a minute
        first = aily(*args, environ=env(server.url))
        assert first.returncode == 0, first.stderr
        assert "12 items: 12 ok, 0 failed" in first.stderr
        lines = records(out)
        assert sorted(line["key"] for line in lines) == list(range(12))
        assert all(line["ok"] for line in lines)

        second = aily(*args, environ=env(server.url))
        assert second.returncode == 0, second.stderr
        assert "12 already done" in second.stderr
        assert skill.starts == Counter(f"q{n}" for n in range(12))


def test_batch_run_to_stdout_and_failed_items_exit_1(server: ThreadedFake, tmp_path: Path) -> None:
    """Without ``--out`` results go to stdout as JSON Lines; an item that fails makes the exit
    status 1 while the others succeed."""
    inputs = tmp_path / "questions.jsonl"
    inputs.write_text(
        '"first"\n{"message": "second", "id": "b"}\n\n{"message": "third", "id": "c"}\n'
    )
    proc = aily("batch", "run", str(inputs), "--app", APP, environ=env(server.url))
    assert_clean_error(proc, 2, r"questions\.jsonl:2: unknown field\(s\) id")

    inputs.write_text('{"message": "first", "id": "a"}\n{"message": "second", "id": "b"}\n')
    server.call(server.fake.inject, "runs.create", status=400, times=1)
    proc = aily(
        "batch", "run", str(inputs), "--app", APP, "--key", "id", "--concurrency", "1",
        environ=env(server.url),
    )  # fmt: skip
    assert proc.returncode == 1, proc.stderr
    records = {r["key"]: r for r in map(json.loads, proc.stdout.splitlines())}
    assert records["a"]["ok"] is False
    assert records["a"]["error"]["code"] == 2700001
    assert records["b"]["ok"] is True
    assert records["b"]["value"]["messages"][0]["content"] == "Echo: second"
    assert "2 items: 1 ok, 1 failed" in proc.stderr


def test_batch_bad_json_line_exits_2(server: ThreadedFake, tmp_path: Path) -> None:
    """A line of the input file that is not JSON is reported with its line number (exit 2)
    before anything is sent."""
    inputs = tmp_path / "in.jsonl"
    inputs.write_text('"ok"\n{"query": oops}\n')
    proc = aily(
        "batch", "skill", str(inputs), "--app", APP, "--skill", SKILL, environ=env(server.url)
    )
    assert_clean_error(proc, 2, r"in\.jsonl:2: not valid JSON")
    assert server.fake.requests == []


def test_interrupted_cli_batch_resumes_and_does_each_item_once(tmp_path: Path) -> None:
    """Ctrl-C in ``aily batch`` stops it with status 130 after the calls underway finish;
    the same command again completes the batch and every skill was started exactly once."""
    skill = SlowSkill(delay=0.1)
    inputs = tmp_path / "in.jsonl"
    inputs.write_text("".join(json.dumps({"query": f"q{n}"}) + "\n" for n in range(30)))
    out = tmp_path / "out.jsonl"
    with ThreadedFake(skill_handler=skill) as server:
        args = [
            "batch", "skill", str(inputs), "--app", APP, "--skill", SKILL,
            "--out", str(out), "--concurrency", "3", "--no-throttle",
        ]  # fmt: skip
        proc = subprocess.Popen(
            [*CLI, *args], env=env(server.url), stderr=subprocess.PIPE, text=True
        )
        deadline = time.monotonic() + 30
        while len(records(out)) < 5 and time.monotonic() < deadline:
            time.sleep(0.02)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=30)
        assert proc.returncode == 130, err
        assert "Traceback" not in err
        done = len(records(out))
        assert 5 <= done < 30
        assert sum(skill.starts.values()) == done

        again = aily(*args, environ=env(server.url))
        assert again.returncode == 0, again.stderr
        assert f"{done} already done" in again.stderr
    assert skill.starts == Counter(f"q{n}" for n in range(30))


def test_fake_server_command_serves_until_ctrl_c() -> None:
    """``aily fake-server --port 0`` prints its URL, serves the other commands, and stops
    cleanly on Ctrl-C."""
    proc = subprocess.Popen(
        [*CLI, "fake-server", "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        match = re.search(r"(http://127\.0\.0\.1:\d+)", line)
        assert match, line
        result = aily("skill", "start", APP, SKILL, "--query", "ping", environ=env(match[1]))
        assert result.returncode == 0, result.stderr
        assert json.loads(result.stdout)["query"] == "ping"
    finally:
        proc.send_signal(signal.SIGINT)
        proc.communicate(timeout=30)
    assert proc.returncode == 0


def test_demo_completes_quickly_with_no_429() -> None:
    """``aily demo`` needs no credentials, finishes well under 30 s and reports every number
    of its summary, with zero 429s."""
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("FEISHU_", "AILY_"))}
    start = time.monotonic()
    proc = aily("demo", environ=environ, timeout=60)
    took = time.monotonic() - start
    assert proc.returncode == 0, proc.stderr
    assert took < 30
    out = proc.stdout
    for label in (
        "items: 400",
        "failures: 4",
        "requests spent:",
        "requests per run:",
        "429s received: 0",
        "quota utilisation: skills.start",
        "wall time:",
    ):
        assert label in out, out
    utilisation = re.search(r"skills\.start (\d+)% of what its quota windows allowed", out)
    assert utilisation is not None
    assert int(utilisation[1]) >= 80
    assert "skills.start: 300/300 done, 3 failed" in proc.stderr  # the plain progress line


def test_run_wait_with_a_short_timeout_returns_a_run_that_ended_in_time(
    server: ThreadedFake,
) -> None:
    """``aily run --wait --timeout 1`` on a run of about 0.35 s (the first poll is due after
    1 s) prints the answer and exits 0: the wait looks once more before its deadline."""
    proc = aily(
        "run", "--new-session", "--app", APP, "-m", "quick", "--wait", "--timeout", "1",
        environ=env(server.url),
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "Echo: quick"
