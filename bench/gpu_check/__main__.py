"""Entry point of `python -m bench.gpu_check`."""

import sys

from bench.gpu_check.cli import main

sys.exit(main())
