import pytest

from patchbench.config import parse_lambdas
from patchbench.errors import PatchbenchError


def test_range_default_step_gives_icaart_lambdas():
    assert parse_lambdas("1.5:3.5") == [1.5, 1.9, 2.3, 2.7, 3.1, 3.5]


def test_range_with_step_and_list():
    assert parse_lambdas("0:1:0.5") == [0.0, 0.5, 1.0]
    assert parse_lambdas("2.3,2.7,3.5") == [2.3, 2.7, 3.5]
    assert parse_lambdas([2.3, "1.5:1.9"]) == [2.3, 1.5, 1.9]
    assert parse_lambdas("2:2") == [2.0]


@pytest.mark.parametrize("bad", ["3.5:1.5", "a:b", "1:2:0", "1:2:-1", "-1", "1,-2", "1:2:3:4", "", "x", "nan"])
def test_malformed(bad):
    with pytest.raises(PatchbenchError):
        parse_lambdas(bad)
