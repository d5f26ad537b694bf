"""``python -m harness.cli``: the same as the ``swarmtwin`` command."""

import sys

from harness.cli.main import entry

sys.exit(entry())
