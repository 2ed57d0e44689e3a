"""The integration stages: 2D XRD and SAXS frames to calibrated 1D patterns with pyFAI.
"""
