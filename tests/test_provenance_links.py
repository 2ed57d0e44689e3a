"""Provenance that cannot be fooled (issue 13 item 5): an HDF5 image whose
data live in other files (external links, virtual datasets, external raw
storage) records every file read, with its checksum, and refuses a link that
leaves the file's folder (``-> /etc/passwd``) with one line.

The legitimate case is an Eiger master file beside its ``data_NNNNNN.h5``.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import fabio
import h5py
import numpy as np
import pytest

from dacpipe.core.errors import InputError
from dacpipe.io.config import load_config
from dacpipe.io.images import hdf5_linked_files, input_files, read_image
from dacpipe.run.runner import run_stage
from dacpipe.run.store import read_result

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "data-sample" / "hgte_thz"


@pytest.fixture(scope="module")
def frames() -> np.ndarray:
    """Two real 256x256 frames of data-sample (the PONI's detector)."""
    return np.stack([fabio.open(str(SAMPLE / "xrd" / f"hgte_p00{i}.cbf")).data.astype(np.int32)
                     for i in (1, 2)])


def write_data(path: Path, frames: np.ndarray) -> Path:
    with h5py.File(path, "w") as h5:
        h5["/entry/data/data"] = frames
    return path


def write_master(path: Path, target: str) -> Path:
    with h5py.File(path, "w") as h5:
        h5["/entry/data/data_000001"] = h5py.ExternalLink(target, "/entry/data/data")
    return path


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def integrate(folder: Path, reference: str):
    """The xrd stage of a one-point run on ``reference``: its part read back."""
    (folder / "points.tsv").write_text(f"point\txrd\tpressure_GPa\np1\t{reference}\t1.0\n")
    config = folder / "config.yaml"
    config.write_text(f"results_dir: {folder / 'results'}\nruns:\n  r:\n    sheet: {folder / 'points.tsv'}\n"
                      f"    pressure: {{gauge: sheet}}\n"
                      f"    xrd: {{poni: {SAMPLE / 'xrd.poni'}, npt: 100, rejection: {{method: none}}}}\n")
    return read_result(run_stage(load_config([config]), "r", "xrd"), "r")


def test_an_eiger_master_records_its_data_file_with_its_checksum(tmp_path, frames):
    data = write_data(tmp_path / "scan_data_000001.h5", frames)
    master = write_master(tmp_path / "scan_master.h5", "scan_data_000001.h5")
    assert input_files(master) == [master, data]
    np.testing.assert_array_equal(read_image(f"{master}@1"), frames[1].astype(np.float32))
    result = integrate(tmp_path, f"{master}@1")
    assert result.status == ["ok"]
    recorded = {Path(r.path): r for r in result.inputs}
    assert recorded[data].sha256 == sha256(data) and recorded[data].size == data.stat().st_size
    assert recorded[master].sha256 == sha256(master)
    # The data file changed, the master not: the checksum of what was read changes.
    write_data(data, frames[::-1])
    again = {Path(r.path): r for r in integrate(tmp_path, f"{master}@1").inputs}
    assert again[data].sha256 != recorded[data].sha256 and again[master].sha256 == recorded[master].sha256


def test_an_external_link_out_of_the_folder_is_refused(tmp_path, frames):
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    write_data(outside / "data.h5", frames)
    run = tmp_path / "run"
    run.mkdir()
    master = write_master(run / "master.h5", str(outside / "data.h5"))
    with pytest.raises(InputError) as caught:
        read_image(f"{master}@0")
    message = str(caught.value)
    assert message.startswith(f"{master}: /entry/data/data_000001 is an external link to {outside / 'data.h5'}, "
                              f"outside the file's folder")
    assert "\n" not in message
    # ../ is outside too; the stage leaves a NaN row and says why.
    write_master(run / "up.h5", "../elsewhere/data.h5")
    result = integrate(run, "up.h5@0")
    assert result.status[0].startswith("xrd skipped: ") and "outside the file's folder" in result.status[0]
    assert np.all(np.isnan(result.datasets["I"][0]))


def test_virtual_datasets_inside_are_read_and_recorded_outside_refused(tmp_path, frames):
    source = write_data(tmp_path / "source.h5", frames)
    layout = h5py.VirtualLayout(shape=frames.shape, dtype=frames.dtype)
    layout[:] = h5py.VirtualSource("source.h5", "/entry/data/data", shape=frames.shape)
    with h5py.File(tmp_path / "vds.h5", "w") as h5:
        h5.create_virtual_dataset("/entry/data/data", layout)
    assert hdf5_linked_files(tmp_path / "vds.h5") == [source]
    np.testing.assert_array_equal(read_image(f"{tmp_path / 'vds.h5'}::/entry/data/data@1"),
                                  frames[1].astype(np.float32))

    run = tmp_path / "run"
    run.mkdir()
    layout = h5py.VirtualLayout(shape=frames.shape, dtype=frames.dtype)
    layout[:] = h5py.VirtualSource(str(source), "/entry/data/data", shape=frames.shape)
    with h5py.File(run / "vds.h5", "w") as h5:
        h5.create_virtual_dataset("/entry/data/data", layout)
    with pytest.raises(InputError, match=r"/entry/data/data is a virtual dataset whose source is .*source\.h5, "
                                         r"outside the file's folder"):
        read_image(f"{run / 'vds.h5'}::/entry/data/data@0")


def test_external_raw_storage_out_of_the_folder_is_refused(tmp_path, monkeypatch):
    """External raw storage reads bytes of any file as pixels (/etc/passwd would do)."""
    secret = tmp_path / "secret.bin"
    secret.write_bytes(bytes(range(256)) * 256)
    run = tmp_path / "run"
    run.mkdir()
    with h5py.File(run / "raw.h5", "w") as h5:
        h5.create_dataset("/entry/data/data", shape=(256, 256), dtype=np.uint8, external=[(str(secret), 0, 65536)])
    with pytest.raises(InputError, match=r"/entry/data/data is external raw storage in .*secret\.bin, "
                                         r"outside the file's folder"):
        read_image(f"{run / 'raw.h5'}::/entry/data/data")
    # Inside the folder (HDF5 resolves the name against the current folder): read, and recorded.
    inside = run / "pixels.bin"
    inside.write_bytes(bytes(range(256)) * 256)
    with h5py.File(run / "raw_inside.h5", "w") as h5:
        h5.create_dataset("/entry/data/data", shape=(256, 256), dtype=np.uint8, external=[("pixels.bin", 0, 65536)])
    monkeypatch.chdir(run)
    assert input_files(run / "raw_inside.h5") == [run / "raw_inside.h5", inside]
    image = read_image(f"{run / 'raw_inside.h5'}::/entry/data/data")
    np.testing.assert_array_equal(image[0, :5], [0, 1, 2, 3, 4])


def test_links_outside_the_folder_read_and_recorded_when_the_config_allows(tmp_path, frames):
    """hdf5_links_outside: true reads a link that leaves the file's folder, and
    records its target with its checksum."""
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    data = write_data(outside / "data.h5", frames)
    run = tmp_path / "run"
    run.mkdir()
    write_master(run / "master.h5", str(data))
    (run / "points.tsv").write_text("point\txrd\tpressure_GPa\np1\tmaster.h5@1\t1.0\n")
    config = run / "config.yaml"
    config.write_text(f"results_dir: {run / 'results'}\nruns:\n  r:\n    sheet: {run / 'points.tsv'}\n"
                      f"    pressure: {{gauge: sheet}}\n"
                      f"    xrd: {{poni: {SAMPLE / 'xrd.poni'}, npt: 100, rejection: {{method: none}}, "
                      f"hdf5_links_outside: true}}\n")
    try:
        result = read_result(run_stage(load_config([config]), "r", "xrd"), "r")
    finally:
        from dacpipe.io.images import allow_links_outside
        allow_links_outside(False)
    assert result.status == ["ok"]
    recorded = {Path(r.path): r for r in result.inputs}
    assert recorded[data].sha256 == sha256(data)
    with pytest.raises(InputError, match="hdf5_links_outside: true"):
        read_image(f"{run / 'master.h5'}@1")   # refused again once the run is done with
