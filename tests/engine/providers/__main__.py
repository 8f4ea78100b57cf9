"""``python -m tests.engine.providers <package> [engine address]``: serve one stand-in
provider as the engine starts a plugin (it passes its own address; unused here)."""

from __future__ import annotations

import sys

from tests.engine.providers.server import PACKAGES, serve

if len(sys.argv) < 2 or sys.argv[1] not in PACKAGES:
    sys.exit(f"usage: python -m tests.engine.providers {{{'|'.join(PACKAGES)}}} [engine-address]")
serve(sys.argv[1])
