"""``python -m rke.runner``: the command the RKE ``local.Command`` runs (rke.component)."""

import sys

from rke.runner.cli import main

sys.exit(main(sys.argv[1:]))
