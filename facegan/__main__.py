"""`python -m facegan` runs the command line."""

import sys

from facegan.cli.main import main

sys.exit(main())
