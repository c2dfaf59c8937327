"""``python -m aily_async.testing``: serve a fake Aily OpenAPI until Ctrl-C."""

from __future__ import annotations

from ._serve import main, serve

__all__ = ["main", "serve"]

if __name__ == "__main__":
    raise SystemExit(main())
