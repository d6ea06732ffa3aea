"""`python -m breakeven` is the `breakeven` command."""

import sys

from breakeven.cli.main import main

sys.exit(main())
