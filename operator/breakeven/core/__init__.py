"""The pure core: facts in, decision, sizing, manifests and statuses out.

Nothing here does I/O: no clock, no randomness, no network, no Kubernetes client, no file writes
(the packaged data files under `data/` are read once, as constants). The shell calls these
functions and carries out what they return; import-linter (pyproject.toml) enforces it.
"""
