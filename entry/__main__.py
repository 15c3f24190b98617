"""``python -m gateway``: the same CLI as the ``gateway`` script (for a venv not on PATH)."""

import sys

from gateway.http.cli import main

sys.exit(main())
