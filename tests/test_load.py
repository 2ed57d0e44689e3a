"""dacpipe.load: a store as xarray Datasets and pandas DataFrames, and the
example notebook under docs/ executed against data-sample's store."""

from __future__ import annotations

import os
from pathlib import Path

import h5py
import numpy as np
import pytest

from test_exports import V0_FU_A3, make_store

xr = pytest.importorskip("xarray", reason="dacpipe.load needs the notebook extra (xarray)")
pd = pytest.importorskip("pandas", reason="dacpipe.load needs the notebook extra (pandas)")

NOTEBOOK = Path(__file__).resolve().parents[1] / "docs" / "loading_a_store.ipynb"


def test_load_labels_and_units(tmp_path):
    import dacpipe

    store = make_store(tmp_path / "mini.h5")
    run = dacpipe.load(store)
    assert run.run == "mini"
    assert run.xrd["I"].dims == ("point", "q") and run.xrd.sizes == {"point": 4, "q": 60}
    assert run.xrd["q"].attrs["units"] == "1/angstrom" and run.xrd["two_theta"].attrs["units"] == "degree"
    with h5py.File(store) as h5:
        np.testing.assert_array_equal(run.xrd["pressure"].values, h5["mini/points/pressure_GPa"][()])
        np.testing.assert_array_equal(run.xrd["I"].sel(point="p002").values, h5["mini/xrd/I"][1])
        np.testing.assert_array_equal(run.xrd["calc"].values, h5["mini/phases/calc"][()])
    volume = run.phases["volume_fu_A3"]
    assert volume.dims == ("point", "phase") and volume.attrs["units"] == "angstrom^3"
    assert list(run.phases["phase"].values) == ["HgTe-zb"]
    assert float(run.eos.loc["HgTe-zb", "V0_fu_A3"]) == V0_FU_A3
    table = run.tables["phases_HgTe-zb"]
    assert table.index.name == "point" and table.attrs["units"]["a_A"] == "angstrom"
    assert list(run.points.index) == ["p001", "p002", "p003", "p004"]


def test_load_missing_store_is_one_line(tmp_path):
    import dacpipe
    from dacpipe.run.store import StoreError

    with pytest.raises(StoreError, match="not found"):
        dacpipe.load(tmp_path / "none.h5")


@pytest.mark.slow
def test_example_notebook_runs(sample_results, tmp_path):
    nbformat = pytest.importorskip("nbformat", reason="the notebook test needs nbformat")
    nbclient = pytest.importorskip("nbclient", reason="the notebook test needs nbclient")
    pytest.importorskip("ipykernel", reason="the notebook test needs an IPython kernel")
    results, _ = sample_results
    figure = tmp_path / "figure.png"
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    env = {"DACPIPE_STORE": str(results / "hgte_thz.h5"), "DACPIPE_FIGURE": str(figure)}
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)   # the kernel inherits this process's environment
    try:
        nbclient.NotebookClient(notebook, timeout=120, kernel_name="python3",
                                resources={"metadata": {"path": str(NOTEBOOK.parent)}}).execute()
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    assert figure.stat().st_size > 10_000
    table = notebook.cells[2].outputs[0]["data"]["text/plain"]
    assert "pressure_GPa" in table
