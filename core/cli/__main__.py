"""``python -m wiredraw.core.cli``: the ``wiredraw`` command (benchmarks and tests start it this way)."""

from wiredraw.core.cli import main

raise SystemExit(main())
