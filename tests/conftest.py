from pathlib import Path

import pytest

REVEAL = Path(__file__).resolve().parents[2] / "shared" / "data" / "reveal" / "reveal.jsonl.gz"


@pytest.fixture(scope="session")
def reveal_path() -> Path:
    if not REVEAL.is_file():
        pytest.skip(f"ReVeal not found at {REVEAL}")
    return REVEAL
