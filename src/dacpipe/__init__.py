"""dacpipe: raw diamond-anvil-cell data to pressure, structure, EOS and band gap."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("dacpipe")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0+unknown"


def __getattr__(name: str):
    # dacpipe.load imports h5py, xarray and pandas only when asked for: `import dacpipe` stays cheap.
    if name == "load":
        from .run.load import load

        return load
    raise AttributeError(f"module 'dacpipe' has no attribute {name!r}")
