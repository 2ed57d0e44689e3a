"""dacpipe: raw diamond-anvil-cell data to pressure, structure, EOS and band gap."""


def __getattr__(name: str):
    # Both on first use, so that `import dacpipe` stays cheap: the version
    # (importlib.metadata, ~30 ms at every job's start), and dacpipe.load
    # (h5py, xarray and pandas).
    if name == "__version__":
        from importlib.metadata import PackageNotFoundError, version

        try:
            found = version("dacpipe")
        except PackageNotFoundError:  # running from a source tree that was never installed
            found = "0+unknown"
        globals()["__version__"] = found
        return found
    if name == "load":
        from .run.load import load

        return load
    raise AttributeError(f"module 'dacpipe' has no attribute {name!r}")
