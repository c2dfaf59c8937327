"""Public classes carry the public module's name: tracebacks, reprs and pickles say
``aily_async.AilyNotFoundError``, not ``aily_async._errors.AilyNotFoundError``."""

from __future__ import annotations

import inspect
import typing
from collections.abc import Iterable, Mapping

import attrs

__all__ = ["publish"]


def publish(module: str, namespace: Mapping[str, object], names: Iterable[str]) -> None:
    """Set ``__module__`` to ``module`` on each class in ``names`` defined below it.

    String annotations are looked up in ``sys.modules[cls.__module__]``, which is about to
    change: each class's own annotations are resolved first, in the module that wrote them
    (attrs fields too), so ``typing.get_type_hints`` and cattrs still work. A class whose
    annotations cannot be resolved keeps its name (``tests/test_exports.py`` would say so).
    Pickles still load: each class is reachable as ``module.<name>``.
    """
    prefix = module + "."
    for name in names:
        obj = namespace[name]
        if not isinstance(obj, type) or not obj.__module__.startswith(prefix):
            continue
        if obj.__qualname__ != name:
            continue  # reachable under another name only: pickle could not find it
        own = inspect.get_annotations(obj)
        try:
            if attrs.has(obj):
                attrs.resolve_types(obj)
            hints = typing.get_type_hints(obj, include_extras=True) if own else {}
        except NameError:
            continue
        if own:
            obj.__annotations__ = {key: hints.get(key, value) for key, value in own.items()}
        obj.__module__ = module
