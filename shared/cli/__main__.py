"""`python -m shared.cli …`"""

import logging
import sys

from shared.cli import main

logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s %(message)s")
sys.exit(main())
