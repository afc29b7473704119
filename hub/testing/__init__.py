"""The hub's test kit for channel plugin authors (pytest plugin ``hub``, loaded automatically)."""
