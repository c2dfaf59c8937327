"""The pytest plugin, as a user meets it: a real ``pytest`` run, in a fresh process and
folder, of a user's test file that only names the fixtures (found through the ``pytest11``
entry point, not imported), in pytest-asyncio's strict mode."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from collections.abc import Sequence
from pathlib import Path

import pytest

from aily_async import Limits, TokenBucket

USER_TESTS = '''
import asyncio

import pytest

from aily_async import AilyClient
from aily_async.testing import FakeAily, RunPlan

APP = "spring_449d72db2f__c"


@pytest.fixture
def fake_aily_options():
    return {"run_script": RunPlan(queued=0.0, duration=0.05)}


@pytest.mark.asyncio
async def test_a_run_is_answered(aily_client: AilyClient, fake_aily: FakeAily) -> None:
    result = await aily_client.runs.run("What changed?", app_id=APP, timeout=10)
    assert result.ok
    assert fake_aily.created_runs == 1
    assert aily_client.limiter_for("runs.create") is None  # the fake has no quotas here


@pytest.mark.asyncio
async def test_each_test_gets_a_fresh_fake(fake_aily: FakeAily) -> None:
    assert fake_aily.created_runs == 0
    assert fake_aily.created_sessions == 0


@pytest.mark.asyncio
@pytest.mark.fake_aily(rate_limits={"skills.start": [(10, 60.0)]}, time_scale=0.02)
async def test_quotas_on_the_fakes_time_scale(aily_client: AilyClient, fake_aily: FakeAily):
    # 10 per minute, scaled: 10 per 1.2 s. 12 starts at once: the client spreads them.
    await asyncio.gather(
        *(aily_client.skills.start(APP, "skill_echo", query=str(n)) for n in range(12))
    )
    assert sum(fake_aily.rate_limited.values()) == 0
    assert fake_aily.route_counts()["skills.start"] == 12


@pytest.mark.asyncio
@pytest.mark.fake_aily(rate_limits=True, time_scale=0.05)
async def test_documented_quotas_scaled(aily_client: AilyClient) -> None:
    bucket = aily_client.limiter_for("runs.create")
    assert (bucket.rate, bucket.per) == (100, pytest.approx(3.0))


@pytest.mark.asyncio
@pytest.mark.fake_aily(credentials={"cli_mine": "my-secret"})
async def test_the_fakes_credentials_are_used(aily_client: AilyClient) -> None:
    assert (await aily_client.sessions.create()).id.startswith("session_")
'''


def test_a_users_test_file_runs_with_the_fixtures(tmp_path: Path) -> None:
    """``fake_aily`` and ``aily_client`` work in a user's project: runs answered, fresh state
    per test, marker options, quotas matched to the time scale (no 429), the fake's
    credentials."""
    (tmp_path / "test_my_app.py").write_text(USER_TESTS, encoding="utf-8")
    (tmp_path / "pytest.ini").write_text(
        textwrap.dedent(
            """\
            [pytest]
            asyncio_mode = strict
            asyncio_default_fixture_loop_scope = function
            filterwarnings = error
            """
        ),
        encoding="utf-8",
    )
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "test_my_app.py"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "5 passed" in done.stdout


def test_limits_scaled_shrinks_every_window() -> None:
    """Limits.scaled(0.05): runs.create gets 100 per 3 s; other calls 1000 per 3 s and 50
    per 0.05 s; a quota given is scaled too."""
    built: dict[str, list[tuple[int, float]]] = {}

    def capture(call: str, windows: Sequence[tuple[int, float]]) -> TokenBucket:
        built[call] = [(rate, round(per, 9)) for rate, per in windows]
        return TokenBucket(*windows[0])

    limits = Limits.scaled(0.05, {"skills.get": (10, 1.0)}, factory=capture)
    for call in ("runs.create", "sessions.get", "skills.get"):
        limits.for_call(call)
    assert built == {
        "runs.create": [(100, 3.0)],
        "sessions.get": [(1000, 3.0), (50, 0.05)],
        "skills.get": [(10, 0.05)],
    }
    with pytest.raises(ValueError, match="scale"):
        Limits.scaled(0)
