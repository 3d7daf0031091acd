import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _real_data_root() -> Path | None:
    for candidate in (os.environ.get("FEWSHOT_BENCH_DATA"), REPO.parent / "shared" / "data"):
        if candidate and (Path(candidate) / "omniglot" / "images_background.zip").is_file():
            return Path(candidate)
    return None


@pytest.fixture(scope="session")
def data_root() -> Path:
    """The real datasets (CI has them in ../shared/data); tests that need them skip without."""
    root = _real_data_root()
    if root is None:
        pytest.skip("real datasets not found: set FEWSHOT_BENCH_DATA or put them in ../shared/data")
    return root


@pytest.fixture(autouse=True)
def _isolated_store(tmp_path, monkeypatch):
    # every test gets its own results store; data and decode cache stay shared
    monkeypatch.setenv("FEWSHOT_BENCH_STORE", str(tmp_path / "store"))
    root = _real_data_root()
    if root is not None:
        monkeypatch.setenv("FEWSHOT_BENCH_DATA", str(root))
