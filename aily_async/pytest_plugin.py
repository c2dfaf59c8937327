"""pytest fixtures for testing an app built on aily_async, against a real :class:`FakeAily`.

Installed with the package (the ``pytest11`` entry point ``aily_async``), nothing to
configure; the fixtures are async, so the tests need pytest-asyncio (either mode)::

    async def test_answer(aily_client, fake_aily):
        result = await aily_client.runs.run("hi", app_id="spring_x__c")
        assert fake_aily.created_runs == 1

- ``fake_aily``: a :class:`aily_async.testing.FakeAily` served on 127.0.0.1 for the test, with
  fresh state (a server starts in milliseconds, so each test gets its own, as with
  pytest-httpserver's clean state per test). Its options come from the ``fake_aily_options``
  fixture (override it in a conftest or module) and then the test's
  ``@pytest.mark.fake_aily(**options)`` marker.
- ``aily_client``: an :class:`aily_async.AilyClient` bound to it, closed after the test. When
  the fake enforces quotas (``rate_limits``: the documented ones, or a mapping of its own),
  the client's limiter is ``Limits.scaled(time_scale, ...)`` of the same quotas, so the
  client stays under them as it would under the real ones; otherwise it does not throttle.
  Its other options come from the ``aily_client_options`` fixture (default: runs polled
  every 50 ms).

The fixtures import aily_async when a test uses them, not when pytest starts. This module is
outside :mod:`aily_async.testing`, which imports nothing from the rest of the package.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Mapping
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from aily_async import AilyClient
    from aily_async.testing import FakeAily

_async: Callable[..., Any]
try:  # pytest-asyncio's decorator: the fixtures then work in strict mode too
    from pytest_asyncio import fixture as _async
except ImportError:  # pragma: no cover - without pytest-asyncio async fixtures cannot run
    _async = pytest.fixture

__all__ = [
    "FAKE_APP_ID",
    "FAKE_APP_SECRET",
    "aily_client",
    "aily_client_options",
    "fake_aily",
    "fake_aily_options",
]

#: The credentials ``aily_client`` signs in with (any are accepted unless the fake is given
#: ``credentials=``; then its first pair is used).
FAKE_APP_ID = "cli_pytest_app"
FAKE_APP_SECRET = "pytest-secret"


def pytest_configure(config: pytest.Config) -> None:
    """Declare the ``fake_aily`` marker."""
    config.addinivalue_line(
        "markers",
        "fake_aily(**options): keyword arguments of the FakeAily behind the fake_aily fixture",
    )


@pytest.fixture
def fake_aily_options() -> dict[str, Any]:
    """Keyword arguments of every ``fake_aily`` in scope (override this fixture to set them);
    a test's ``@pytest.mark.fake_aily(...)`` adds to them."""
    return {}


@pytest.fixture
def aily_client_options() -> dict[str, Any]:
    """Keyword arguments of ``aily_client`` (override to change them; ``limiter=`` given here
    replaces the one matched to the fake)."""
    return {"poll_interval": 0.05}


@pytest.fixture
def _fake_aily_config(
    request: pytest.FixtureRequest, fake_aily_options: dict[str, Any]
) -> dict[str, Any]:
    options = dict(fake_aily_options)
    for marker in reversed(list(request.node.iter_markers("fake_aily"))):
        if marker.args:
            raise pytest.UsageError("@pytest.mark.fake_aily takes keyword arguments only")
        options.update(marker.kwargs)  # the closest marker (the test's) wins
    return options


@_async
async def fake_aily(_fake_aily_config: dict[str, Any]) -> AsyncIterator[FakeAily]:
    """A :class:`FakeAily` on 127.0.0.1 with fresh state, for one test."""
    from aily_async.testing import FakeAily

    async with FakeAily(**_fake_aily_config) as fake:
        yield fake


@_async
async def aily_client(
    fake_aily: FakeAily,
    _fake_aily_config: dict[str, Any],
    aily_client_options: dict[str, Any],
) -> AsyncIterator[AilyClient]:
    """An :class:`AilyClient` bound to ``fake_aily``, quotas matched to its time scale."""
    from aily_async import AilyClient, Limits

    credentials = _fake_aily_config.get("credentials")
    app_id, secret = (
        next(iter(credentials.items())) if credentials else (FAKE_APP_ID, FAKE_APP_SECRET)
    )
    options = dict(aily_client_options)
    if "limiter" not in options:
        quotas = _fake_aily_config.get("rate_limits")
        scale = float(_fake_aily_config.get("time_scale", 1.0))
        if isinstance(quotas, Mapping):  # the fake's own quotas, by call ("default": the rest)
            named = {call: list(windows) for call, windows in quotas.items()}
            default = named.pop("default", None)
            options["limiter"] = (
                Limits.scaled(scale, named)
                if default is None
                else Limits.scaled(scale, named, default=default)
            )
        else:
            options["limiter"] = Limits.scaled(scale) if quotas else None
    options.setdefault("base_url", fake_aily.url)
    async with AilyClient(app_id, secret, **options) as client:
        yield client
