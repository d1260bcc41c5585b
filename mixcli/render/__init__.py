"""Output formats: ``table`` (rich, for people), ``json`` and ``csv`` (for pipelines).

Renderers take result objects and return text; nothing here fits or reads data.
"""
