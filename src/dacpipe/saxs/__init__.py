"""Small-angle scattering of nanocrystal superlattices: peaks on the form factor,
first order, spacing, lattice type, and the superlattice stage.
"""
