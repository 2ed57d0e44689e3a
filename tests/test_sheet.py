"""Sample sheets: reading, the clear messages, and the first sheet for a folder."""

import math

import pytest

from dacpipe.core.errors import SheetError
from dacpipe.io.sheet import make_sheet, read_sheet


def write(tmp_path, text, name="points.tsv"):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_reads_paths_relative_to_the_sheet(tmp_path):
    path = write(tmp_path, "# a comment\npoint\truby_before\txrd\ttemperature_K\tnote\n"
                           "a\tr/a.txt\timg.h5::/entry/data@3\t\tfirst\nb\t\t\t310\t\n")
    sheet = read_sheet(path)
    assert sheet.point_ids == ["a", "b"]
    a, b = sheet.points
    assert a.files["ruby_before"] == str(tmp_path / "r" / "a.txt")
    assert a.files["xrd"] == str(tmp_path / "img.h5") + "::/entry/data@3"
    assert a.temperature_K == 298.0 and b.temperature_K == 310.0
    assert "ruby_before" not in b.files and a.note == "first"


def test_repeated_point(tmp_path):
    path = write(tmp_path, "point\truby\na\tx.txt\nb\ty.txt\na\tz.txt\n")
    with pytest.raises(SheetError, match=r"line 4: point 'a' repeats line 2"):
        read_sheet(path)


def test_unknown_column_suggests(tmp_path):
    path = write(tmp_path, "point\truby_befor\na\tx.txt\n")
    with pytest.raises(SheetError) as err:
        read_sheet(path)
    assert str(path) in str(err.value) and "did you mean 'ruby_before'" in str(err.value)


def test_bad_number_is_a_point_problem_not_a_sheet_error(tmp_path):
    path = write(tmp_path, "point\tpressure_GPa\ttemperature_K\na\t1.5\tabc\nb\tx\t300\n")
    a, b = read_sheet(path).points
    assert math.isnan(a.temperature_K) and "temperature_K 'abc'" in a.problems[0]
    assert math.isnan(b.pressure_GPa) and b.temperature_K == 300.0


def test_space_separated_header_hint(tmp_path):
    with pytest.raises(SheetError, match="separated by tabs"):
        read_sheet(write(tmp_path, "point ruby\na x.txt\n"))


def test_missing_sheet(tmp_path):
    with pytest.raises(SheetError, match="sample sheet not found"):
        read_sheet(tmp_path / "none.tsv")


def test_make_sheet_pairs_on_numbers(tmp_path):
    for name in ["hgte_002.tif", "hgte_001.tif", "ruby_before_001.txt", "ruby_after_001.txt",
                 "ruby_002_a.txt", "ruby_002_b.txt", "saxs_001.edf", "notes.md", "absorption_002.csv"]:
        (tmp_path / name).write_text("x")
    # "ruby_002_a" and "_b" have their number before the letter: last digits still 002.
    text = make_sheet(tmp_path)
    assert "# not placed: notes.md" in text
    sheet_path = tmp_path / "points.tsv"
    sheet_path.write_text(text)
    sheet = read_sheet(sheet_path)
    assert sheet.point_ids == ["p001", "p002"]
    p1, p2 = sheet.points
    assert p1.files["xrd"].endswith("hgte_001.tif") and p1.files["saxs"].endswith("saxs_001.edf")
    assert p1.files["ruby_before"].endswith("ruby_before_001.txt")
    assert p1.files["ruby_after"].endswith("ruby_after_001.txt")
    assert p2.files["ruby_before"].endswith("ruby_002_a.txt") and p2.files["ruby_after"].endswith("ruby_002_b.txt")
    assert p2.files["absorption"].endswith("absorption_002.csv")
