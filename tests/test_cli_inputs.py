"""The rows ``nnparity predict`` reads: what --input and CSV text accept."""
import numpy as np
import pytest

from nnparity.shared.cli.inputs import parse_rows


def test_decimal_rows_parse_exactly():
    x = parse_rows("--input", ["28.1,58.0", " -3 , .5", "1e-3,+2."], 2)
    assert x.dtype == np.float64
    assert np.array_equal(x, [[28.1, 58.0], [-3.0, 0.5], [1e-3, 2.0]])


@pytest.mark.parametrize("rows, fragment", [
    pytest.param(["1_000,2"], "'1_000' is not one", id="underscore"),   # float() takes it
    pytest.param(["inf,2"], "'inf' is not one", id="inf"),
    pytest.param(["nan,2"], "'nan' is not one", id="nan"),
    pytest.param(["0x10,2"], "'0x10' is not one", id="hex"),
    pytest.param(["1e999,2"], "finite numbers", id="overflows"),
    pytest.param(["1,2,3"], "input width", id="too-many"),
    pytest.param(["1"], "input width", id="too-few"),
    pytest.param(["1,"], "'' is not one", id="empty-field"),
    pytest.param([], "at least one row", id="no-rows"),
])
def test_bad_rows_name_the_row_and_the_problem(rows, fragment):
    with pytest.raises(ValueError, match="--input") as info:
        parse_rows("--input", rows, 2)
    assert fragment in str(info.value)
