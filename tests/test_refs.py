"""The one parser of file references: ``file.h5::/path@N`` and frame ranges ``@first:stop``."""

from __future__ import annotations

from pathlib import Path

import pytest

from dacpipe.core.errors import InputError
from dacpipe.io.refs import FileRef, file_part, parse_reference, resolve


@pytest.mark.parametrize("text, expected", [
    ("frame.tif", FileRef(Path("frame.tif"))),
    ("stack.edf@2", FileRef(Path("stack.edf"), None, 2)),
    ("scan.h5::/entry/data/data@7", FileRef(Path("scan.h5"), "/entry/data/data", 7)),
    ("scan.h5::entry/data", FileRef(Path("scan.h5"), "/entry/data")),
    ("scan_master.h5::/entry/data/data@0:10", FileRef(Path("scan_master.h5"), "/entry/data/data", 0, 10)),
    ("stack.edf@3:5", FileRef(Path("stack.edf"), None, 3, 5)),
])
def test_parse_and_print_back(text, expected):
    ref = parse_reference(text)
    assert ref == expected
    assert parse_reference(str(ref)) == ref


def test_range_is_half_open_like_python():
    ref = parse_reference("m.h5::/entry/data@0:10")
    assert ref.frames == range(0, 10) and ref.n_frames == 10
    assert parse_reference("m.h5@4").frames == range(4, 5) and parse_reference("m.h5@4").n_frames == 1
    assert parse_reference("m.h5").frames is None and parse_reference("m.h5").n_frames == 1
    assert ref.single(3) == FileRef(Path("m.h5"), "/entry/data", 3)


@pytest.mark.parametrize("text, reason", [
    ("m.h5@5:5", "frame range 5:5 is empty"),
    ("m.h5@6:2", "frame range 6:2 is empty"),
    ("m.h5@-1", "negative"),
    ("m.h5@2:-1", "frame range 2:-1 is empty"),
])
def test_bad_ranges_are_refused_in_one_line(text, reason):
    with pytest.raises(InputError, match=reason) as info:
        parse_reference(text)
    assert "\n" not in str(info.value) and text in str(info.value)


def test_file_part_and_resolve_keep_the_range(tmp_path):
    assert file_part("run/m.h5::/entry/data@0:10") == "run/m.h5"
    assert file_part("stack.edf@1:3") == "stack.edf"
    assert resolve(tmp_path, "m.h5::/entry/data@0:10") == f"{tmp_path}/m.h5::/entry/data@0:10"
    assert resolve(tmp_path, "stack.edf@1:3") == f"{tmp_path}/stack.edf@1:3"
