"""kb_expand: expand entity-type labels into related words from knowledge bases."""
__version__ = "0.1.0"
