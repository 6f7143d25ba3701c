"""``python tests/engines [fetch|java]`` (or ``python -m engines`` from tests/): see
:func:`engines.cli.main`."""

from __future__ import annotations

import sys
from pathlib import Path

if not __package__:
    # Run as a directory: sys.path[0] is this package's own folder; import it from tests/.
    sys.path[0] = str(Path(__file__).resolve().parent.parent)

from engines.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
