"""``python -m tla_edge.cli``: the same as the ``tla-edge`` command."""

import sys

from tla_edge.cli import main

sys.exit(main())
