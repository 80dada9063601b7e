"""The package version, recorded in every build (a module of its own so the store needs no package import)."""

__version__ = "0.1.0"
