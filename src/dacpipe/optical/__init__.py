"""Band gaps (Tauc) and photoluminescence against pressure: spectra on an energy axis,
edge and band fits, E(P) per phase, and the optical stage.
"""
