"""`python -m shared.cli …` (the same as the `acsd365` console script)."""

import sys

from shared.cli import main

sys.exit(main())
