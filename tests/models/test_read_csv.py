"""The data-file reader the built-in models share: format, header, and errors naming file:line."""

from __future__ import annotations

import numpy as np
import pytest

from optml.errors import ObjectiveError
from optml.models import read_csv


def write(tmp_path, text, name="data.csv"):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_numeric_rows_last_column_target(tmp_path):
    x, y = read_csv(write(tmp_path, "1,2,3\n4,5,6\n"))
    np.testing.assert_array_equal(x, [[1, 2], [4, 5]])
    np.testing.assert_array_equal(y, [3, 6])
    assert x.dtype == float and y.dtype == float


def test_header_comments_blank_lines_and_spaces_are_skipped(tmp_path):
    text = '# made by hand\n"a", "b",target\n\n 1.5 , -2e-3, 7\n# middle comment\n0,0,0\n'
    x, y = read_csv(write(tmp_path, text))
    np.testing.assert_allclose(x, [[1.5, -0.002], [0, 0]])
    np.testing.assert_array_equal(y, [7, 0])


def test_text_labels_are_data_not_a_header(tmp_path):
    x, y = read_csv(write(tmp_path, "1,2,cat\n3,4,dog\n"), target="label")
    assert x.shape == (2, 2)
    assert list(y) == ["cat", "dog"]


def test_header_over_text_labels_is_skipped(tmp_path):
    x, y = read_csv(write(tmp_path, "w,h,kind\n1,2,cat\n"), target="label")
    assert x.shape == (1, 2) and list(y) == ["cat"]


@pytest.mark.parametrize(
    ("text", "line", "says"),
    [
        ("1,2,3\n4,5\n", 2, "expected 3"),
        ("a,b,c\n1,2,3\n4,5,6,7\n", 3, "expected 3"),
        ("1,2,3\n4,x,6\n", 2, "column 2"),
        ("1,2,3\n4,5,nan\n", 2, "target"),
        ("1,2,3\n4,inf,6\n", 2, "column 2"),
        ("7\n8\n", 1, "two"),
    ],
)
def test_malformed_rows_name_file_and_line(tmp_path, text, line, says):
    path = write(tmp_path, text, "broken.csv")
    with pytest.raises(ObjectiveError, match=rf"broken\.csv:{line}: .*{says}"):
        read_csv(path)


def test_text_in_numeric_target_after_first_row(tmp_path):
    path = write(tmp_path, "1,2,3\n4,5,six\n", "t.csv")
    with pytest.raises(ObjectiveError, match=r"t\.csv:2: the target"):
        read_csv(path)


def test_empty_label_is_rejected(tmp_path):
    path = write(tmp_path, "1,2,a\n3,4,\n", "l.csv")
    with pytest.raises(ObjectiveError, match=r"l\.csv:2: the label"):
        read_csv(path, target="label")


@pytest.mark.parametrize("text", ["", "# only a comment\n", "x,y\n"])
def test_file_without_data_rows(tmp_path, text):
    path = write(tmp_path, text, "empty.csv")
    with pytest.raises(ObjectiveError, match=r"empty\.csv: .*no data rows"):
        read_csv(path)


def test_missing_file(tmp_path):
    with pytest.raises(ObjectiveError, match=r"nowhere\.csv: cannot read"):
        read_csv(tmp_path / "nowhere.csv")


def test_binary_file(tmp_path):
    path = tmp_path / "blob.csv"
    path.write_bytes(b"\xff\xfe\x00\x01")
    with pytest.raises(ObjectiveError, match=r"blob\.csv: .*not UTF-8"):
        read_csv(path)
