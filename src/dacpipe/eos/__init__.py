"""Equations of state: one class per model, fits of P-V data, the F-f check, and the EOS stage.
"""
