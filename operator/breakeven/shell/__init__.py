"""The shell: the only layer that talks to the world (kopf, the Kubernetes API, Prometheus,
files, metrics). It gathers facts, calls the core, and carries out what the core decided."""
