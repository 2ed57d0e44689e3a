"""The pressure stage: gauge spectra (ruby, Sm:SrB4O7, diamond Raman edge) fitted,
corrected for temperature and converted with a named scale, with an honest uncertainty.
"""
