"""The project's version: the one place it is written (pyproject.toml reads it from here), so
that the agent knows it without importlib.metadata, which costs 3 MB of RSS on a small device."""

VERSION = "0.1.0"
