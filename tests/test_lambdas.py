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


@pytest.mark.parametrize("bad, message", [
    ("3.5:1.5", "malformed λ range '3.5:1.5': stop is below start"),
    ("a:b", "malformed λ range 'a:b': start, stop and step must be numbers"),
    ("1:2:0", "malformed λ range '1:2:0': step must be > 0"),
    ("1:2:-1", "malformed λ range '1:2:-1': step must be > 0"),
    ("-1", "λ must be a finite number >= 0, got -1.0"),
    ("1,-2", "λ must be a finite number >= 0, got -2.0"),
    ("1:2:3:4", "malformed λ range '1:2:3:4': expected start:stop[:step]"),
    ("", "empty λ list"),
    ("x", "malformed λ list 'x': expected numbers like 2.3,2.7"),
    ("nan", "λ must be a finite number >= 0, got nan"),
])
def test_malformed(bad, message):
    with pytest.raises(PatchbenchError) as e:
        parse_lambdas(bad)
    assert str(e.value) == message
