"""dacpipe: raw diamond-anvil-cell data to pressure, structure, EOS and band gap."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("dacpipe")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0+unknown"
