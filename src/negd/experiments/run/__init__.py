"""Running one experiment into a run directory: the runner, its problem set-up and twin, restoring
and storing arms, the directory lock, provenance and the environment record."""
