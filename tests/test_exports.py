"""The public surface: ``aily_async.__all__`` is complete and every name in it exists."""

from __future__ import annotations

import importlib
import pkgutil
from types import ModuleType

import pytest

import aily_async

# Names in a private module's ``__all__`` that are deliberately not re-exported, with why.
INTERNAL: dict[str, set[str]] = {
    # Token plumbing used by the transport only.
    "_auth": {"Credentials", "TENANT_TOKEN_INVALID", "TOKEN_CALL", "TOKEN_PATH"},
    # The code-to-class mapping behind every API error.
    "_errors": {"api_error"},
    # How the client builds its limiters from the ``limiter=`` option.
    "_limiter": {"LimiterOption", "limiter_set"},
    # The per-task "a request leaves" hook batches use.
    "_hooks": {"sending"},
    # Resource classes are reached as ``client.sessions`` etc., never built by users; the
    # helpers every resource shares.
    "_resources": {"Messages", "Resource", "Sessions", "Skills", "model", "pages", "structure"},
    "_runs": {"Runs"},
    # The retry loop and its rules (users pass a RetryPolicy).
    "_retry": {"NotSent", "Safety", "call_with_retries", "may_have_landed", "not_sent"},
    # The request seam and its counters (reached as ``client.stats``).
    "_transport": {"API_PREFIX", "Stats", "Transport"},
    # The shared poll loop under RunHandle.
    "_poller": {"Guard", "Poller"},
    # A lower bound of the server clock, read by runs.create.
    "_server_clock": {"ServerClock"},
    "_run_handle": {"RunCalls"},
    # The default wire and the envelope decoder (users may give their own Wire).
    "_wire": {"AiohttpWire", "decode"},
}
# Private modules of helpers only, with no public names (and so no ``__all__``).
HELPER_MODULES = {"_validation"}


def _private_modules() -> list[ModuleType]:
    names = sorted(
        info.name
        for info in pkgutil.iter_modules(aily_async.__path__)
        if info.name.startswith("_")
        and not info.name.startswith("__")
        and info.name not in HELPER_MODULES
    )
    return [importlib.import_module(f"aily_async.{name}") for name in names]


PRIVATE = _private_modules()


def test_there_are_private_modules() -> None:
    """The discovery below sees the package's private modules (guards against a vacuous pass)."""
    names = {module.__name__ for module in PRIVATE}
    assert {"aily_async._client", "aily_async._errors", "aily_async._models"} <= names


@pytest.mark.parametrize("module", PRIVATE, ids=lambda m: m.__name__)
def test_private_module_names_are_reexported(module: ModuleType) -> None:
    """Every name in a private module's ``__all__`` is in ``aily_async.__all__`` (unless it
    is listed as internal) and is the same object there."""
    short = module.__name__.rsplit(".", 1)[1]
    declared = getattr(module, "__all__", None)
    assert declared is not None, f"{module.__name__} has no __all__"
    internal = INTERNAL.get(short, set())
    missing = sorted(set(declared) - internal - set(aily_async.__all__))
    assert missing == [], f"{module.__name__} names not re-exported: {missing}"
    for name in set(declared) - internal:
        obj = getattr(module, name)
        assert getattr(aily_async, name) is obj
        if isinstance(obj, type):
            assert obj.__module__ == module.__name__, name


def test_internal_list_is_current() -> None:
    """Every name listed as internal still exists in its module's ``__all__``."""
    for short, names in INTERNAL.items():
        module = importlib.import_module(f"aily_async.{short}")
        assert names <= set(module.__all__), short


def test_every_exported_name_exists() -> None:
    """Each name in ``aily_async.__all__`` exists, once, and ``import *`` gives exactly them."""
    assert len(aily_async.__all__) == len(set(aily_async.__all__))
    for name in aily_async.__all__:
        assert hasattr(aily_async, name), name
    namespace: dict[str, object] = {}
    exec("from aily_async import *", namespace)
    namespace.pop("__builtins__", None)
    assert set(namespace) == set(aily_async.__all__)


def test_version() -> None:
    """``__version__`` is exported and is a non-empty string."""
    assert "__version__" in aily_async.__all__
    assert isinstance(aily_async.__version__, str)
    assert aily_async.__version__
