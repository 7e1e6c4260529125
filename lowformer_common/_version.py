"""The package version: pyproject.toml reads it from here (one place to change it)."""

__version__ = "0.1.0"
