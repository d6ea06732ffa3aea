"""Settings shared by every test tier."""

import os
import sys
from typing import Any

from hypothesis import settings

# CI runs the property tests derandomized (the same examples every run) so a red build always
# reproduces; locally they explore new examples each run. HYPOTHESIS_PROFILE overrides either.
settings.register_profile("ci", derandomize=True, print_blob=True)
settings.register_profile("dev", print_blob=True)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci" if os.environ.get("CI") else "dev"))


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """The fuzz suite's counts (tests/fuzzing.py), when any fuzz test ran."""
    fuzzing = sys.modules.get("fuzzing")
    if fuzzing is None or not fuzzing.COUNTS:
        return
    terminalreporter.section("fuzz cases")
    for line in fuzzing.summary_lines():
        terminalreporter.write_line(line)
    fuzzing.write_summary()
