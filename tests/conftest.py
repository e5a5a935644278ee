"""Shared fixtures. The library lives in workflow/scripts; make it importable without installing."""

import os
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "workflow" / "scripts"))
# Also for the Snakemake jobs the tests start: their scripts append workflow/scripts to
# sys.path, behind an installed (e.g. editable, other checkout's) copy of the package.
os.environ["PYTHONPATH"] = os.pathsep.join(
    p for p in (str(REPO / "workflow" / "scripts"), os.environ.get("PYTHONPATH")) if p
)


@pytest.fixture(scope="session")
def repo() -> Path:
    return REPO
