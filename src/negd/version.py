"""The version of negd, at the ground so that any floor can record it with a run."""

__version__ = "0.1.0"
