"""Diffraction patterns to structure: peaks, phases (structures and the library),
cells, whole-pattern refinement, indexing across a series, XRD pressure markers.
"""
