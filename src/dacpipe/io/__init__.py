"""Input at the edges: file references, images, PONI geometry, spectra, the sample sheet,
the config and its schema, JCPDS/CIF phase files. Every problem is a one-line
:class:`~dacpipe.core.errors.InputError` (or ConfigError, SheetError) naming the file.
"""
