"""Tests of dacpipe.io.images: references, good files, and every kind of damage."""

from __future__ import annotations

import bz2
import gzip
from pathlib import Path

import fabio.cbfimage
import fabio.edfimage
import fabio.fit2dmaskimage
import fabio.tifimage
import h5py
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dacpipe.core.errors import InputError
from dacpipe.io.images import frame_count, read_frame_file, read_image, read_mask
from dacpipe.io.refs import FileRef, parse_reference

SHAPE = (60, 80)  # rows x columns; not square, so a transposed reader would show


def _data(dtype=np.int32, seed=0):
    return np.random.default_rng(seed).integers(0, 1000, SHAPE).astype(dtype)


def _write(kind: str, path: Path, data: np.ndarray) -> Path:
    writer = {"edf": fabio.edfimage.EdfImage, "tif": fabio.tifimage.TifImage,
              "cbf": fabio.cbfimage.CbfImage}[kind]
    writer(data=data).write(str(path))
    return path


def _truncate(path: Path, n_bytes: int) -> Path:
    raw = path.read_bytes()
    path.write_bytes(raw[:n_bytes])  # negative: cut that many bytes off the end
    return path


def _assert_one_line(err: InputError, path) -> None:
    text = str(err)
    assert "\n" not in text
    assert text.startswith(f"{path}: ")


# --- references ----------------------------------------------------------------

@pytest.mark.parametrize("text, expected", [
    ("a.tif", FileRef(Path("a.tif"))),
    ("dir/a.edf@2", FileRef(Path("dir/a.edf"), None, 2)),
    ("f.h5::/entry/data", FileRef(Path("f.h5"), "/entry/data")),
    ("f.h5::/entry/data@7", FileRef(Path("f.h5"), "/entry/data", 7)),
    ("f.h5::entry/data@0", FileRef(Path("f.h5"), "/entry/data", 0)),
    ("scan@10.tif", FileRef(Path("scan@10.tif"))),  # '@' not at the end: part of the name
])
def test_parse_reference(text, expected):
    assert parse_reference(text) == expected


def test_reference_round_trips_through_str():
    ref = parse_reference("f.h5::/entry/data@7")
    assert parse_reference(str(ref)) == ref


def test_path_objects_are_never_parsed():
    assert parse_reference(Path("odd@3")) == FileRef(Path("odd@3"))


@pytest.mark.parametrize("text, words", [
    ("", "empty file reference"),
    ("f.h5::", "nothing after '::'"),
    ("f.h5::/", "nothing after '::'"),
    ("::/entry/data", "no file name"),
    ("f.h5::/d@-1", "negative"),
])
def test_bad_references(text, words):
    with pytest.raises(InputError, match=words):
        parse_reference(text)


# --- good files ------------------------------------------------------------------

@pytest.mark.parametrize("kind", ["edf", "tif", "cbf"])
def test_read_good_image(tmp_path, kind):
    data = _data()
    path = _write(kind, tmp_path / f"img.{kind}", data)
    image = read_image(str(path), expected_shape=SHAPE)
    assert image.dtype == np.float32 and image.shape == SHAPE
    assert image.flags.c_contiguous
    np.testing.assert_array_equal(image, data.astype(np.float32))
    assert frame_count(str(path)) == 1


def test_read_image_accepts_path_objects(tmp_path):
    path = _write("edf", tmp_path / "img.edf", _data())
    assert read_image(path).shape == SHAPE


def test_multi_frame_edf(tmp_path):
    first, second = _data(seed=1), _data(seed=2)
    img = fabio.edfimage.EdfImage(data=first)
    img.append_frame(data=second)
    path = tmp_path / "two.edf"
    img.write(str(path))
    assert frame_count(str(path)) == 2
    np.testing.assert_array_equal(read_image(f"{path}@1"), second)
    np.testing.assert_array_equal(read_image(f"{path}@0"), first)
    with pytest.raises(InputError, match=r"EDF file has 2 frames; name one as two.edf@N"):
        read_image(str(path))
    with pytest.raises(InputError, match="EDF file has 2 frames, frame 5 asked for"):
        read_image(f"{path}@5")


def test_frame_index_on_single_frame_file(tmp_path):
    # fabio's getframe() on a one-frame file would open the *next file of a
    # series* (img0001.edf -> img0002.edf); an index past 0 must be an error.
    data = _data()
    path = _write("edf", tmp_path / "img0001.edf", data)
    _write("edf", tmp_path / "img0002.edf", data + 1)
    np.testing.assert_array_equal(read_image(f"{path}@0"), data)
    with pytest.raises(InputError, match="has 1 frames, frame 1 asked for"):
        read_image(f"{path}@1")


# --- damaged files -------------------------------------------------------------------

def test_truncated_tiff(tmp_path):
    path = _truncate(_write("tif", tmp_path / "img.tif", _data()), -10)
    with pytest.raises(InputError, match="truncated TIFF: fabio returned no data") as info:
        read_image(str(path))
    _assert_one_line(info.value, path)


@pytest.mark.parametrize("cut", [-1, -100, 5000])
def test_truncated_edf_is_not_zero_padded(tmp_path, cut):
    # fabio pads a short EDF with zeros; cutting one byte of small counts even
    # gives back identical values. Only the size check catches it.
    path = _truncate(_write("edf", tmp_path / "img.edf", _data()), cut)
    with pytest.raises(InputError, match="truncated EDF") as info:
        read_image(str(path), expected_shape=SHAPE)
    _assert_one_line(info.value, path)


def test_edf_header_size_smaller_than_data(tmp_path):
    path = _write("edf", tmp_path / "img.edf", _data())
    raw = path.read_bytes().replace(b"Size = 19200 ;", b"Size = 19000 ;")
    path.write_bytes(raw)
    with pytest.raises(InputError, match="EDF"):
        read_image(str(path))


def _read_cbf(path, route, **kwargs):
    """read_image on a CBF: from the path, or from the bytes read_frame_file read (the stage's route)."""
    if route == "bytes":
        content = read_frame_file(str(path))
        assert content == path.read_bytes()
        return read_image(str(path), content=content, **kwargs)
    return read_image(str(path), **kwargs)


CBF_ROUTES = ["path", "bytes"]


@pytest.mark.parametrize("route", CBF_ROUTES)
def test_truncated_cbf(tmp_path, route):
    path = _truncate(_write("cbf", tmp_path / "img.cbf", _data()), 6000)
    with pytest.raises(InputError, match="truncated or damaged CBF") as info:
        _read_cbf(path, route)
    _assert_one_line(info.value, path)


@pytest.mark.parametrize("route", CBF_ROUTES)
def test_cbf_cut_before_its_binary_section_does_not_hang(tmp_path, route):
    # fabio loops forever on this file, waiting for the binary start marker
    path = _write("cbf", tmp_path / "img.cbf", _data())
    raw = path.read_bytes()
    path.write_bytes(raw[: raw.index(fabio.cbfimage.CbfImage.STARTER)])
    with pytest.raises(InputError, match="truncated CBF: the binary data section never starts"):
        _read_cbf(path, route)


@pytest.mark.parametrize("route", CBF_ROUTES)
def test_cbf_checksum_mismatch(tmp_path, route):
    # fabio decodes a CBF whose data bytes changed and only logs the bad MD5
    path = _write("cbf", tmp_path / "img.cbf", _data())
    raw = bytearray(path.read_bytes())
    raw[raw.index(fabio.cbfimage.CbfImage.STARTER) + 100] ^= 0x01
    path.write_bytes(bytes(raw))
    with pytest.raises(InputError, match="Content-MD5"):
        _read_cbf(path, route)


@pytest.mark.parametrize("route", CBF_ROUTES)
def test_cbf_missing_only_its_end_marker_is_complete(tmp_path, route):
    # The binary section is whole; only the closing MIME boundary is cut.
    data = _data()
    path = _truncate(_write("cbf", tmp_path / "img.cbf", data), -5)
    np.testing.assert_array_equal(_read_cbf(path, route), data)


def test_cbf_frame_index(tmp_path):
    data = _data()
    path = _write("cbf", tmp_path / "img.cbf", data)
    np.testing.assert_array_equal(read_image(f"{path}@0"), data)
    reference = f"{path}@1"
    for kwargs in ({}, {"content": read_frame_file(reference)}):
        with pytest.raises(InputError, match="CBF file has 1 frames, frame 1 asked for"):
            read_image(reference, **kwargs)


@pytest.mark.parametrize("compress", [gzip.compress, bz2.compress])
def test_compressed_cbf(tmp_path, compress):
    data = _data()
    plain = _write("cbf", tmp_path / "img.cbf", data).read_bytes()
    suffix = ".gz" if compress is gzip.compress else ".bz2"
    path = tmp_path / f"img.cbf{suffix}"
    path.write_bytes(compress(plain))
    content = read_frame_file(str(path))
    assert content == path.read_bytes()  # the file as stored: that is what provenance checksums
    np.testing.assert_array_equal(read_image(str(path), content=content), data)
    np.testing.assert_array_equal(read_image(str(path)), data)
    _truncate(path, len(content) // 2)
    for kwargs in ({}, {"content": read_frame_file(str(path))}):
        with pytest.raises(InputError, match="truncated or damaged compressed file") as info:
            read_image(str(path), **kwargs)
        _assert_one_line(info.value, path)


def test_read_frame_file_reads_only_cbf(tmp_path):
    data = _data()
    for kind in ("edf", "tif"):
        assert read_frame_file(str(_write(kind, tmp_path / f"img.{kind}", data))) is None
    with h5py.File(tmp_path / "img.h5", "w") as h5:
        h5["data"] = data[None]
    assert read_frame_file(f"{tmp_path / 'img.h5'}::/data@0") is None
    with pytest.raises(InputError, match="file not found"):
        read_frame_file(str(tmp_path / "missing.cbf"))
    # A CBF that is really an HDF5 file (by its signature) is read as HDF5, as without bytes.
    (tmp_path / "img.h5").rename(tmp_path / "odd.cbf")
    content = read_frame_file(str(tmp_path / "odd.cbf"))
    np.testing.assert_array_equal(read_image(str(tmp_path / "odd.cbf"), content=content), data)


@pytest.mark.parametrize("name", ["img.tif", "img.edf", "img.cbf", "img.h5", "img.npy"])
def test_empty_file(tmp_path, name):
    path = tmp_path / name
    path.write_bytes(b"")
    with pytest.raises(InputError, match="empty file"):
        read_image(str(path))


@pytest.mark.parametrize("name", ["img.tif", "img.edf", "img.cbf", "img.dat", "img.h5", "img.mccd"])
def test_random_bytes(tmp_path, name):
    path = tmp_path / name
    path.write_bytes(np.random.default_rng(3).bytes(5000))
    with pytest.raises(InputError) as info:
        read_image(str(path))
    _assert_one_line(info.value, path)


def test_missing_file_and_directory(tmp_path):
    with pytest.raises(InputError, match="file not found"):
        read_image(str(tmp_path / "nope.tif"))
    with pytest.raises(InputError, match="is a directory"):
        read_image(str(tmp_path))


def test_wrong_shape_names_both_shapes(tmp_path):
    path = _write("tif", tmp_path / "img.tif", _data())
    with pytest.raises(InputError, match="image is 60x80 but the detector is 80x60"):
        read_image(str(path), expected_shape=(80, 60))


def test_all_nan_image(tmp_path):
    path = _write("edf", tmp_path / "nan.edf", np.full(SHAPE, np.nan, dtype=np.float32))
    with pytest.raises(InputError, match="no finite pixel"):
        read_image(str(path))


def test_some_nan_is_fine(tmp_path):
    data = _data(np.float32)
    data[0, :5] = np.nan
    image = read_image(str(_write("edf", tmp_path / "nan.edf", data)))
    assert np.isnan(image[0, :5]).all() and np.isfinite(image[1:]).all()


# --- HDF5 / NeXus ---------------------------------------------------------------------

@pytest.fixture
def stack_h5(tmp_path):
    path = tmp_path / "stack.h5"
    stack = np.stack([_data(seed=s) for s in range(5)]).astype(np.uint16)
    with h5py.File(path, "w") as h5:
        h5["/entry/data/data"] = stack
        h5["/entry/instrument/detector/pixel_mask"] = np.zeros(SHAPE, np.uint32)  # not the image
        h5["/entry/single"] = stack[2]
    return path, stack


def test_hdf5_frames(stack_h5):
    path, stack = stack_h5
    image = read_image(f"{path}::/entry/data/data@3", expected_shape=SHAPE)
    assert image.dtype == np.float32
    np.testing.assert_array_equal(image, stack[3])
    assert frame_count(f"{path}::/entry/data/data") == 5
    np.testing.assert_array_equal(read_image(f"{path}::/entry/single"), stack[2])
    np.testing.assert_array_equal(read_image(f"{path}::/entry/single@0"), stack[2])


def test_hdf5_frame_out_of_range(stack_h5):
    path, _ = stack_h5
    with pytest.raises(InputError, match="HDF5 dataset /entry/data/data has 5 frames, frame 7 asked for") as info:
        read_image(f"{path}::/entry/data/data@7")
    _assert_one_line(info.value, path)
    with pytest.raises(InputError, match="has 1 frames, frame 1 asked for"):
        read_image(f"{path}::/entry/single@1")


def test_hdf5_stack_needs_a_frame(stack_h5):
    path, _ = stack_h5
    with pytest.raises(InputError, match=r"has 5 frames; name one as stack.h5::/entry/data/data@N"):
        read_image(f"{path}::/entry/data/data")


def test_hdf5_missing_dataset_and_group(stack_h5):
    path, _ = stack_h5
    with pytest.raises(InputError, match="HDF5 file has no dataset /entry/nope"):
        read_image(f"{path}::/entry/nope")
    with pytest.raises(InputError, match="/entry/data is a group, not a dataset"):
        read_image(f"{path}::/entry/data")


def test_hdf5_ambiguous_without_path(stack_h5):
    path, _ = stack_h5
    with pytest.raises(InputError, match=r"2 HDF5 datasets could be the image .*stack.h5::/path"):
        read_image(str(path))


def test_hdf5_single_image_dataset_found(tmp_path):
    path = tmp_path / "one.nxs"
    with h5py.File(path, "w") as h5:
        h5["/entry/instrument/detector/data"] = np.stack([_data(seed=1), _data(seed=2)])
        h5["/entry/instrument/detector/flatfield"] = np.ones((1, *SHAPE), np.float32)
        h5["/entry/instrument/detector/x_pixel_size"] = [55.0]
    assert frame_count(str(path)) == 2
    np.testing.assert_array_equal(read_image(f"{path}@1"), _data(seed=2))


def test_nexus_default_signal(tmp_path):
    path = tmp_path / "default.nxs"
    with h5py.File(path, "w") as h5:
        h5.attrs["default"] = "entry"
        entry = h5.create_group("entry")
        entry.attrs.update(NX_class="NXentry", default="plot")
        plot = entry.create_group("plot")
        plot.attrs.update(NX_class="NXdata", signal="frame")
        plot["frame"] = _data(seed=4)
        entry["other"] = _data(seed=5)  # a second image: only the default decides
    np.testing.assert_array_equal(read_image(str(path)), _data(seed=4))
    np.testing.assert_array_equal(read_image(f"{path}::/entry/plot"), _data(seed=4))  # NXdata group


def test_nexus_default_of_integrated_patterns_is_not_an_image(tmp_path):
    path = tmp_path / "proc.nxs"
    with h5py.File(path, "w") as h5:
        h5.attrs["default"] = "processed"
        entry = h5.create_group("processed")
        entry.attrs.update(NX_class="NXentry", default="result")
        result = entry.create_group("result")
        result.attrs.update(NX_class="NXdata", signal="data", axes=[".", "binning"])
        result["data"] = np.ones((50, 400), np.float32)
        result["binning"] = np.linspace(1, 30, 400)
        result["binning"].attrs["unit"] = "deg"
        entry["mask"] = np.zeros(SHAPE, bool)
    with pytest.raises(InputError, match="NeXus default /processed/result/data is not a detector image"):
        read_image(str(path))
    assert read_mask(f"{path}::/processed/mask").shape == SHAPE


def test_hdf5_bad_shapes_and_types(tmp_path):
    path = tmp_path / "bad.h5"
    with h5py.File(path, "w") as h5:
        h5["four_d"] = np.zeros((2, 2, 20, 20))
        h5["line"] = np.zeros(100)
        h5["text"] = np.array([b"a", b"b"] * 400).reshape(20, 40)
        h5["empty"] = np.zeros((0, 20, 20))
    with pytest.raises(InputError, match="shape 2x2x20x20, not an image"):
        read_image(f"{path}::/four_d")
    with pytest.raises(InputError, match="shape 100, not an image"):
        read_image(f"{path}::/line")
    with pytest.raises(InputError, match="not numbers"):
        read_image(f"{path}::/text")
    with pytest.raises(InputError, match="0 frames"):
        read_image(f"{path}::/empty")


def test_truncated_hdf5(stack_h5):
    path, _ = stack_h5
    _truncate(path, path.stat().st_size // 2)
    with pytest.raises(InputError, match="truncated or damaged HDF5") as info:
        read_image(f"{path}::/entry/data/data@0")
    _assert_one_line(info.value, path)


def test_hdf5_path_on_a_tiff(tmp_path):
    path = _write("tif", tmp_path / "img.tif", _data())
    with pytest.raises(InputError, match="not an HDF5 file"):
        read_image(f"{path}::/entry/data")


# --- masks ---------------------------------------------------------------------------

def _mask_pattern():
    mask = np.zeros(SHAPE, np.int8)
    mask[10:20, 30:35] = 1
    mask[0, 0] = 7  # any non-zero value masks
    return mask


def test_dioptas_mask_tiff(tmp_path):
    # Dioptas writes int8 TIFF with deflate compression through PIL
    from PIL import Image

    path = tmp_path / "dioptas.mask"
    Image.fromarray(_mask_pattern()).save(path, "tiff", compression="tiff_deflate")
    mask = read_mask(str(path), shape=SHAPE)
    assert mask.dtype == bool
    np.testing.assert_array_equal(mask, _mask_pattern() != 0)


def test_edf_npy_and_fit2d_masks(tmp_path):
    expected = _mask_pattern() != 0
    edf = _write("edf", tmp_path / "m.edf", _mask_pattern().astype(np.int32))
    npy = tmp_path / "m.npy"
    np.save(npy, _mask_pattern())
    msk = tmp_path / "m.msk"
    fabio.fit2dmaskimage.Fit2dMaskImage(data=expected.astype(np.uint8)).write(str(msk))
    for path in (edf, npy, msk):
        np.testing.assert_array_equal(read_mask(path, shape=SHAPE), expected, err_msg=str(path))


def test_float_mask_keeps_tiny_values_and_nan(tmp_path):
    data = np.zeros(SHAPE)
    data[1, 1] = 1e-50  # would round to 0 in float32
    data[2, 2] = np.nan
    path = tmp_path / "m.npy"
    np.save(path, data)
    mask = read_mask(path)
    assert mask[1, 1] and mask[2, 2] and mask.sum() == 2


def test_mask_of_wrong_shape(tmp_path):
    path = tmp_path / "m.npy"
    np.save(path, _mask_pattern())
    with pytest.raises(InputError, match="mask is 60x80 but the detector is 1043x981") as info:
        read_mask(path, shape=(1043, 981))
    _assert_one_line(info.value, path)


def test_bad_npy_masks(tmp_path):
    pickled = tmp_path / "obj.npy"
    np.save(pickled, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(InputError, match="not a readable .npy"):
        read_mask(pickled)
    cube = tmp_path / "cube.npy"
    np.save(cube, np.zeros((2, 3, 4)))
    with pytest.raises(InputError, match="shape 2x3x4, not a 2D image"):
        read_mask(cube)
    junk = tmp_path / "junk.npy"
    junk.write_bytes(b"\x93NUMPY garbage")
    with pytest.raises(InputError):
        read_mask(junk)


def test_truncated_fit2d_mask(tmp_path):
    path = tmp_path / "m.msk"
    fabio.fit2dmaskimage.Fit2dMaskImage(data=(_mask_pattern() != 0).astype(np.uint8)).write(str(path))
    _truncate(path, path.stat().st_size // 2)
    with pytest.raises(InputError, match="truncated or damaged"):
        read_mask(path)


# --- property test: damage never leaks --------------------------------------------------

@pytest.fixture(scope="module")
def good_files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("good")
    data = _data()
    return data, {kind: _write(kind, folder / f"good.{kind}", data).read_bytes() for kind in ("edf", "tif", "cbf")}


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(kind=st.sampled_from(["edf", "tif", "cbf"]), cut=st.floats(0, 1, exclude_max=True),
       junk=st.binary(max_size=600), mode=st.sampled_from(["truncate", "random", "overwrite"]))
def test_damaged_files_only_raise_input_error(tmp_path, good_files, kind, cut, junk, mode):
    data, raw = good_files
    good = raw[kind]
    if mode == "truncate":
        content = good[: int(cut * len(good))]
    elif mode == "random":
        content = junk
    else:  # a few bytes overwritten somewhere, header included
        at = int(cut * len(good))
        content = good[:at] + junk[:16] + good[at + len(junk[:16]):]
    path = tmp_path / f"damaged.{kind}"
    path.write_bytes(content)
    try:
        image = read_image(str(path), expected_shape=SHAPE)
    except InputError as err:
        assert "\n" not in str(err)
        return
    assert image.shape == SHAPE and image.dtype == np.float32
    if mode == "truncate":  # a cut file that still reads must be the whole image
        np.testing.assert_array_equal(image, data)


# --- real data ----------------------------------------------------------------------

@pytest.mark.realdata
def test_real_dioptas_mask(real_data):
    mask = read_mask(real_data / "dioptas" / "test.mask", shape=(2048, 2048))
    assert mask.dtype == bool and mask.shape == (2048, 2048)
    assert 0 < mask.sum() < mask.size


@pytest.mark.realdata
def test_real_pilatus_tiff(real_data):
    path = real_data / "dioptas" / "CeO2_Pilatus1M.tif"
    # "981x1043" in the README is width x height: fabio gives rows x columns
    image = read_image(str(path), expected_shape=(1043, 981))
    assert image.dtype == np.float32
    assert image.min() == -2  # Pilatus module gaps and dead pixels, masked downstream
    assert image.max() > 1e5
    with pytest.raises(InputError, match="image is 1043x981 but the detector is 981x1043"):
        read_image(str(path), expected_shape=(981, 1043))


@pytest.mark.realdata
def test_real_truncated_pilatus_tiff(real_data, tmp_path):
    path = tmp_path / "cut.tif"
    path.write_bytes((real_data / "dioptas" / "CeO2_Pilatus1M.tif").read_bytes()[:-100])
    with pytest.raises(InputError, match="truncated Pilatus TIFF"):
        read_image(str(path))


@pytest.mark.realdata
def test_real_spe(real_data, tmp_path):
    source = real_data / "dioptas" / "spe" / "CeO2_PI_CCD_Mo.SPE"
    image = read_image(str(source), expected_shape=(1042, 1042))
    assert image.max() > 1000
    cut = tmp_path / "cut.SPE"
    cut.write_bytes(source.read_bytes()[:-1000])
    with pytest.raises(InputError, match="truncated"):
        read_image(str(cut))


LAMBDA_DATASET = "/entry/instrument/detector/data"


@pytest.mark.realdata
@pytest.mark.parametrize("module", ["m1", "m2", "m3"])
def test_real_lambda_frames(real_data, module):
    path = real_data / "dioptas" / "lambda" / f"testasapo1_1009_00002_{module}_part00000.nxs"
    assert frame_count(f"{path}::{LAMBDA_DATASET}") == 10
    first = read_image(f"{path}::{LAMBDA_DATASET}@0", expected_shape=(516, 1554))  # one module alone
    last = read_image(f"{path}@9")  # without a dataset: the three modules stitched (tests/test_beamline_files.py)
    assert first.shape == (516, 1554) and last.shape == (1833, 1556)
    assert np.nanmax(first) > 0
    with pytest.raises(InputError, match="has 10 frames; name one"):
        read_image(str(path))
    with pytest.raises(InputError, match="has 10 frames; name one"):
        read_image(f"{path}::{LAMBDA_DATASET}")
    with pytest.raises(InputError, match="has 10 frames, frame 10 asked for"):
        read_image(f"{path}::{LAMBDA_DATASET}@10")


@pytest.mark.realdata
def test_real_lambda_processed_file_and_mask(real_data):
    folder = real_data / "dioptas" / "lambda"
    processed = folder / "testasapo1_1009_00002_proc.nxs"
    # its NeXus default is 50 integrated patterns in 2theta, not a detector image
    with pytest.raises(InputError, match="not a detector image"):
        read_image(str(processed))
    stored = read_mask(f"{processed}::/processed/process/mask", shape=(1833, 1556))
    assert stored.dtype == bool
    mask = read_mask(folder / "l2_l1_synrh9_150m_200ms_850c_oscillation_00001_m2.mask", shape=(1833, 1556))
    assert 0 < mask.sum() < mask.size
