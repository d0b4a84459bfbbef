"""Every collected test has exactly one kind marker (unit, slow, e2e, browser), or the run stops at
collection naming the tests, so a new test file cannot land in the fast subset (or outside every
subset) unnoticed."""

from types import SimpleNamespace

import pytest

from tests.conftest import KINDS, pytest_collection_modifyitems

pytestmark = pytest.mark.unit


class Collected:
    """What the check reads of a collected test: its id and its markers (module's and own)."""

    def __init__(self, nodeid: str, *markers: str):
        self.nodeid = nodeid
        self.session = SimpleNamespace(shouldstop=False)
        self.markers = [getattr(pytest.mark, name).mark for name in markers]

    def iter_markers(self):
        return iter(self.markers)


def test_it_accepts_one_kind_a_test_whatever_else_it_is_marked():
    items = [Collected(f"tests/test_{kind}.py::test_it", kind, "django_db") for kind in KINDS]

    pytest_collection_modifyitems(config=None, items=items)


def test_it_stops_the_run_naming_a_test_without_a_kind():
    items = [Collected("tests/test_new.py::test_it_does_x", "django_db"), Collected("tests/test_a.py::test_b", "unit")]

    with pytest.raises(pytest.UsageError) as refused:
        pytest_collection_modifyitems(config=None, items=items)

    assert "tests/test_new.py::test_it_does_x: no kind" in str(refused.value)
    assert "test_a.py" not in str(refused.value)
    assert "pytestmark" in str(refused.value)


def test_it_stops_the_run_naming_a_test_of_two_kinds():
    items = [Collected("tests/test_mixed.py::test_it", "unit", "browser")]

    with pytest.raises(pytest.UsageError, match=r"tests/test_mixed.py::test_it: browser, unit"):
        pytest_collection_modifyitems(config=None, items=items)


def test_in_a_pytest_xdist_worker_it_runs_nothing_and_stops_the_run_naming_the_test():
    # A worker's UsageError never reaches the terminal; xdist ends the run with shouldstop's words.
    worker = SimpleNamespace(workerinput={"workerid": "gw0"})
    items = [Collected("tests/test_new.py::test_it_does_x", "django_db"), Collected("tests/test_a.py::test_b", "unit")]
    session = items[0].session

    pytest_collection_modifyitems(config=worker, items=items)

    assert items == []
    assert "tests/test_new.py::test_it_does_x: no kind" in session.shouldstop
    assert "test_a.py" not in session.shouldstop


def test_every_kind_is_a_declared_marker(pytestconfig):
    declared = {line.split(":")[0].strip() for line in pytestconfig.getini("markers")}

    assert set(KINDS) <= declared
