"""``python -m harness.calibrate``: the calibration (``harness.calibrate.measure``)."""

import sys

from harness.calibrate.measure import main

sys.exit(main())
