"""``python -m reconciler.cli``: the ``reconcile`` command, without the console script."""

from __future__ import annotations

import sys

from reconciler.cli import entry

sys.exit(entry.main())
