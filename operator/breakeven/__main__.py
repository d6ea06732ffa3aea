"""`python -m breakeven` is the `breakeven` command."""

import sys

from breakeven.cli import main

sys.exit(main())
