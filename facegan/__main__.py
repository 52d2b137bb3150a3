"""`python -m facegan` runs the command line."""

import sys

from facegan.cli import main

sys.exit(main())
