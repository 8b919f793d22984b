"""``python -m harness``: run or check scenario files outside pytest."""

import sys

from harness.cli import main

sys.exit(main())
