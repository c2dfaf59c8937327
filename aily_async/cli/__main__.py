"""``python -m aily_async.cli``: the ``aily`` command line."""

from ._main import main

raise SystemExit(main())
