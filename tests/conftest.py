"""Shared fixtures. The library lives in workflow/scripts; make it importable without installing."""

import os
import sys
from pathlib import Path

import pytest

# pytest puts tests/ (no package) on sys.path before it imports this file
from helpers import REPO, config_path, finished_run

sys.path.insert(0, str(REPO / "workflow" / "scripts"))
# Also for the Snakemake jobs the tests start: their scripts append workflow/scripts to
# sys.path, behind an installed (e.g. editable, other checkout's) copy of the package.
os.environ["PYTHONPATH"] = os.pathsep.join(
    p for p in (str(REPO / "workflow" / "scripts"), os.environ.get("PYTHONPATH")) if p
)


@pytest.fixture(scope="session")
def repo() -> Path:
    return REPO


@pytest.fixture(scope="session")
def tiny_run(repo, tmp_path_factory) -> Path:
    """A folder in which the workflow ran tests/configs/tiny.yaml to the end: once per session,
    shared by every test module that reads a finished run (test_workflow.py, test_report.py)."""
    return finished_run(repo, tmp_path_factory.mktemp("tiny"), config_path("tiny"))
