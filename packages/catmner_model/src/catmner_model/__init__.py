"""catmner_model: the CAT-MNER model, data layer, training and evaluation."""

__version__ = "0.1.0"
