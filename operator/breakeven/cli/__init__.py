"""The `breakeven` command: a shell over the same core the operator runs."""
