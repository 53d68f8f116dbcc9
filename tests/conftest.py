"""Fixtures shared by every test package. Tests never touch the network."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from taxonomy import Taxonomy, default_taxonomy

ROOT = Path(__file__).resolve().parent.parent
SHARED_DATA = ROOT.parent / "shared" / "data"

# Every app a test starts (in process or as a server subprocess, which inherits this) keeps the
# retrain policy off unless the test switches it on: a run starting by itself in the middle of
# a test about something else would make it slow and its outcome a race. The policy's own tests
# pass VT_AUTO_RETRAIN=on (or --auto-retrain on).
os.environ["VT_AUTO_RETRAIN"] = "off"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """``../shared/data``; tests that need it are skipped (with the reason) where it is absent."""
    if not (SHARED_DATA / "meesho-labels" / "train.csv").is_file():
        pytest.skip(f"real data not found at {SHARED_DATA}")
    return SHARED_DATA


@pytest.fixture(scope="session")
def taxonomy() -> Taxonomy:
    return default_taxonomy()
