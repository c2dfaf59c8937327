"""The ``aily`` command line: call skills, ask apps, run batches and the demo, serve a fake."""

from ._main import build_parser, main

__all__ = ["build_parser", "main"]
