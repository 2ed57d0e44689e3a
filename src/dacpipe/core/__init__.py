"""What every stage shares: errors, units, line profiles, noise, least squares,
baselines and the stage signature. Imports nothing else of dacpipe."""
