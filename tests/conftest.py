"""Settings shared by every test tier."""

import os

from hypothesis import settings

# CI runs the property tests derandomized (the same examples every run) so a red build always
# reproduces; locally they explore new examples each run. HYPOTHESIS_PROFILE overrides either.
settings.register_profile("ci", derandomize=True, print_blob=True)
settings.register_profile("dev", print_blob=True)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci" if os.environ.get("CI") else "dev"))
