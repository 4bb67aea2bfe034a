"""Conformance tests reuse the real-binary fixtures of tests/python."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "python"))

from sluice_fixtures import gateway, lake, workdir  # noqa: E402,F401
