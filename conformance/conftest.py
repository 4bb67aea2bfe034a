"""Conformance tests reuse the real-binary fixtures of tests/python and
record their results in the client x feature matrix (matrix.py)."""

import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[0] / "tests" / "python"))
sys.path.insert(0, str(HERE))

from matrix import Matrix, TestCells  # noqa: E402
from sluice_fixtures import gateway, lake, workdir  # noqa: E402,F401

_MATRIX = Matrix()


@pytest.fixture
def matrix():
    cells = TestCells(_MATRIX)
    yield cells
    cells.check()


@pytest.fixture(scope="session")
def reference_pg():
    import reference_pg as ref

    if not ref.available():
        pytest.skip("PostgreSQL server binaries missing (tests/run.sh installs them)")
    server = ref.ReferencePostgres().start()
    yield server
    server.stop()


def pytest_sessionfinish(session, exitstatus):
    # Only a whole run of the suite rewrites the committed matrix.
    opts = session.config.option
    whole = any(Path(a).resolve() == HERE for a in session.config.args)
    if _MATRIX.cells and whole and not opts.keyword and not opts.markexpr:
        _MATRIX.write()
