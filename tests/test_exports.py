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
    "_knowledge": {"Knowledge"},
    "_data_assets": {"DataAssetTags", "DataAssets"},
    "_app_stats": {"AppStats"},
    # The multipart body of an upload (users pass a path, bytes or a file: a FileSource).
    "_uploads": {"Upload"},
    # The retry loop and its rules (users pass a RetryPolicy).
    "_retry": {"NotSent", "Safety", "call_with_retries", "may_have_landed", "not_sent"},
    # The request seam and its counters (reached as ``client.stats``).
    "_transport": {"API_PREFIX", "Transport"},
    "_stats": {"Stats"},
    # Tracking the tasks inside a client (closing ends them), and per-call deadlines.
    "_inflight": {"InFlight", "Scope", "Tracker"},
    "_deadline": {"acquire_by", "bounded"},
    # The shared poll loop under RunHandle.
    "_poller": {"Guard", "Poller"},
    # The count of pollers a shared polling budget divides by, and its default rate.
    "_polling": {"DEFAULT_POLL_SHARE", "PollBudget"},
    # client.agents and its resources (reached as attributes, never built by users); what
    # the chat handle and the stream share; the SSE parser and the body of a streamed answer.
    "_agents": {"AgentArtifacts", "AgentAttachments", "AgentChats", "AgentSessions", "Agents"},
    "_agent_chat": {"AgentChatCalls", "chat_events", "terminal_set"},
    "_agent_stream": {"event_text", "streamed_call"},
    "_sse": {"SSEError", "SSEEvent", "SSEParser"},
    "_stream_body": {"AiohttpBody", "ByteStream", "Streamed"},
    # A lower bound of the server clock, read by runs.create.
    "_server_clock": {"ServerClock"},
    "_run_handle": {"RunCalls"},
    # The session behind the default wire, its proxy choice; the __module__ rewrite.
    "_pool": {"Pool"},
    "_proxy": {"ProxyChoice", "check_proxy"},
    "_public": {"publish"},
    # The default wire and the envelope decoder (users may give their own Wire).
    "_wire": {"AiohttpWire", "StreamingWire", "decode", "open_stream"},
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
            # Public classes are named after the public module (tracebacks, reprs, pickles).
            assert obj.__module__ == "aily_async", name
            assert obj.__qualname__ == name, name


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


def test_public_classes_pickle_under_their_public_name() -> None:
    """Every public exception, built with its own arguments, survives pickling with its class,
    message and attributes, and a traceback names it ``aily_async.<Name>``; models and a run
    status pickle too."""
    import pickle
    import traceback

    from aily_async import Run, RunStatus

    samples: list[BaseException] = []
    for name in aily_async.__all__:
        cls = getattr(aily_async, name)
        if not (isinstance(cls, type) and issubclass(cls, aily_async.AilyError)):
            continue
        if issubclass(cls, aily_async.AilyAPIError):
            extra = {"retry_after": 2.5} if cls is aily_async.AilyRateLimitError else {}
            samples.append(
                cls("slow", code=7, http_status=429, log_id="L1", call="x", hint="h", **extra)
            )
        elif cls is aily_async.AilyValidationError:
            samples.append(cls("field", "must be short", call="x", got="'long'"))
        elif cls is aily_async.RunFailedError:
            run = Run(id="run_1", status=RunStatus.FAILED)
            samples.append(cls(aily_async.RunResult(run=run, messages=())))
        else:
            samples.append(cls("went wrong", call="x"))
    assert len(samples) >= 20
    for error in samples:
        data = pickle.dumps(error)
        copy = pickle.loads(data)
        assert type(copy) is type(error)
        assert str(copy) == str(error)
        assert copy.__dict__.keys() == error.__dict__.keys()
        assert f"aily_async.{type(error).__name__}" in repr(type(copy))
        shown = traceback.format_exception_only(type(error), error)[-1]
        assert shown.startswith(f"aily_async.{type(error).__name__}: "), shown
    run = Run(id="run_1", status=RunStatus("SOMETHING_NEW"))
    assert pickle.loads(pickle.dumps(run)) == run


def test_public_classes_keep_their_type_hints() -> None:
    """Renamed to ``aily_async``, every public class still has resolvable type hints (its
    string annotations were resolved where they were written)."""
    import typing

    for name in aily_async.__all__:
        obj = getattr(aily_async, name)
        if isinstance(obj, type):
            typing.get_type_hints(obj)
