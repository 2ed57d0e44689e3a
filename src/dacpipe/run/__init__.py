"""A run from sheet to store: per-run settings, the stage registry, the runner,
the result store and its provenance, and the figures drawn from it.
"""
