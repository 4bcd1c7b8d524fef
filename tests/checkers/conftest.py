from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
CORPUS = REPO / "tests" / "corpora" / "porcupine"


@pytest.fixture(scope="session")
def corpus() -> Path:
    if not (CORPUS / "EXPECTED.csv").is_file():
        pytest.fail(f"the Porcupine corpus is missing at {CORPUS}")
    return CORPUS
