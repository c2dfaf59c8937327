"""``aily batch`` off the happy path, run as a user runs it (a subprocess against a FakeAily):
odd line breaks in the input, a results file of another batch, failures with ``--out``, and a
Ctrl-C delivered twice at once."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
from test_cli import CLI, ThreadedFake, aily, env, records

APP = "spring_449d72db2f__c"
#: Seconds within which the CLI counts SIGINTs as one Ctrl-C.
BURST = 0.5


def test_input_lines_holding_unicode_line_breaks_are_read_whole(tmp_path: Path) -> None:
    """An input line whose text holds U+2028, U+2029 or U+0085 (written raw, as JSON allows)
    is one input: the batch runs every line.

    Fails without the fix: the file was split with ``str.splitlines()``, which broke those
    lines in two ("not valid JSON", exit 2).
    """
    queries = ["a\u2028b", "c\u2029d", "e\x85f", "plain"]
    inputs = tmp_path / "in.jsonl"
    inputs.write_bytes(
        b"".join(json.dumps(q, ensure_ascii=False).encode() + b"\n" for q in queries)
    )
    with ThreadedFake() as server:
        proc = aily(
            "batch", "skill", str(inputs), "--app", APP, "--skill", "skill_echo",
            "--no-throttle", environ=env(server.url),
        )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    lines = [json.loads(line) for line in proc.stdout.encode().split(b"\n") if line]
    outputs = {line["key"]: json.loads(line["value"]["output"])["query"] for line in lines}
    assert outputs == dict(enumerate(queries))


def test_a_results_file_of_another_batch_is_refused(tmp_path: Path) -> None:
    """``aily batch skill --skill skill_0002 --out R`` where R holds skill_0001's results, or
    ``aily batch run --out R``, stops with an error naming both batches before any call, and
    R is left byte for byte as it was.

    Fails without the fix: the skill_0002 batch reported every item done without a call, and
    the run batch replaced the skill results.
    """
    inputs = tmp_path / "in.jsonl"
    inputs.write_text('"one"\n"two"\n')
    out = tmp_path / "results.jsonl"
    with ThreadedFake() as server:
        base = ["batch", "skill", str(inputs), "--app", APP, "--out", str(out), "--no-throttle"]
        first = aily(*base, "--skill", "skill_0001", environ=env(server.url))
        assert first.returncode == 0, first.stderr
        before = out.read_bytes()
        calls = sum(server.fake.route_counts().values())

        other = aily(*base, "--skill", "skill_0002", environ=env(server.url))
        assert other.returncode == 1, other.stderr
        assert "belongs to another batch" in other.stderr
        assert "skill_id=skill_0001" in other.stderr
        assert "skill_id=skill_0002" in other.stderr
        assert "Traceback" not in other.stderr

        run = aily(
            "batch", "run", str(inputs), "--app", APP, "--out", str(out), "--no-throttle",
            environ=env(server.url),
        )  # fmt: skip
        assert run.returncode == 1, run.stderr
        assert "kind=runs" in run.stderr
        assert out.read_bytes() == before
        assert sum(server.fake.route_counts().values()) == calls


def test_failed_items_are_reported_with_their_row_and_error(tmp_path: Path) -> None:
    """With ``--out``, each failed item is said on stderr with its line number, its row and
    its error, the summary lists the failed lines, and the results file holds the row and the
    error; a row refused on a rerun (another input under its key) is reported the same way.

    Fails without the fix: with ``--out`` nothing but "2 failed" was said.
    """
    inputs = tmp_path / "in.jsonl"
    inputs.write_text('"alpha"\n\n{"query": "beta", "input": {"row": 3}}\n"gamma"\n')
    out = tmp_path / "results.jsonl"
    with ThreadedFake() as server:
        server.call(server.fake.inject, "skills.start", status=400, times=2)
        args = [
            "batch", "skill", str(inputs), "--app", APP, "--skill", "skill_echo",
            "--out", str(out), "--concurrency", "1", "--no-throttle",
        ]  # fmt: skip
        proc = aily(*args, environ=env(server.url))
        assert proc.returncode == 1, proc.stderr
        err = proc.stderr
        assert 'line 1 failed: "alpha": AilyInvalidParamsError: skills.start: param is' in err
        assert 'line 3 failed: {"query":"beta","input":{"row":3}}: AilyInvalidParamsError' in err
        assert "log_id" in err
        assert "3 items: 1 ok, 2 failed (lines 1, 3; see above)" in err
        saved = {r["key"]: r for r in records(out)}
        assert saved[0]["ok"] is False
        assert saved[0]["input"] == "alpha"
        assert saved[0]["error"]["type"] == "AilyInvalidParamsError"
        assert saved[1]["input"] == {"query": "beta", "input": {"row": 3}}
        assert saved[1]["error"]["code"] == 2700001

        inputs.write_text('"gamma"\n"alpha"\n')  # reordered: other inputs under keys 0 and 1
        proc = aily(*args, environ=env(server.url))
        assert proc.returncode == 1, proc.stderr
        assert 'line 1 failed: "gamma": CheckpointError: the checkpoint holds a different' in (
            proc.stderr
        )
        assert "(lines 1, 2; see above)" in proc.stderr


@pytest.mark.parametrize(
    "gap", [0.0, 0.1, 1.5], ids=["at-once", "0.1s-apart", "pressed-twice-1.5s-apart"]
)
def test_two_sigints_at_once_are_one_ctrl_c(tmp_path: Path, gap: float) -> None:
    """Two SIGINTs in quick succession (within a millisecond, as ``timeout -s INT`` and some
    terminals send them, or 0.1 s apart) are one Ctrl-C: the batch says it waits for its 3 runs
    in flight, lets them finish and saves them, exit 130. Two presses 1.5 s apart still mean
    "stop now": the runs are cancelled server-side.

    Fails without the fix: the second signal was taken as a second Ctrl-C and aborted the
    batch, cancelling the runs that were nearly done (0.1 s apart; signals within a
    millisecond were sometimes merged into one by Python's own signal handling, sometimes not),
    and nothing said what the batch was waiting for.
    """
    inputs = tmp_path / "in.jsonl"
    inputs.write_text("".join(json.dumps(f"question {n}") + "\n" for n in range(3)))
    out = tmp_path / "out.jsonl"
    # Runs long enough to outlast the wait and the presses, even on a busy machine.
    with ThreadedFake(run_duration=3.0 if gap <= BURST else 6.0) as server:
        proc = subprocess.Popen(
            [
                *CLI, "batch", "run", str(inputs), "--app", APP, "--out", str(out),
                "--concurrency", "3", "--grace", "30", "--no-throttle", "--no-progress",
            ],
            env=env(server.url),
            stderr=subprocess.PIPE,
            text=True,
        )  # fmt: skip
        try:
            deadline = time.monotonic() + 60
            while server.fake.created_runs < 3 and time.monotonic() < deadline:
                time.sleep(0.02)
            assert server.fake.created_runs == 3
            time.sleep(0.3)  # the runs are recorded as pending
            os.kill(proc.pid, signal.SIGINT)
            if gap:
                time.sleep(gap)
            os.kill(proc.pid, signal.SIGINT)
            _, err = proc.communicate(timeout=60)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        assert proc.returncode == 130, err
        assert "Traceback" not in err
        statuses = sorted(
            run["status"] for sid in server.fake.session_ids() for run in server.fake.runs_in(sid)
        )
        done = [r for r in records(out) if r.get("ok")]
        if gap > BURST:
            assert statuses == ["CANCELLED"] * 3
            assert done == []
            assert "cancelling 3 runs in flight" in err
        else:
            assert statuses == ["COMPLETED"] * 3
            assert len(done) == 3
            assert "3 items are saved" in err
        assert "waiting up to 30s for 3 runs in flight to finish" in err
        assert "Ctrl-C again to cancel them" in err
