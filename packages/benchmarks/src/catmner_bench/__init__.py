"""catmner_bench: reproduce the paper's tables and figures."""

__version__ = "0.1.0"
