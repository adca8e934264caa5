"""``python -m cldyn.cli``."""

import sys

from cldyn.cli import main

sys.exit(main())
