import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

if REPO.name == "mutants":
    # mutmut's copy of the repo. The editable install maps fewshot_bench.protocols to the checkout's
    # protocols/; mutmut names those mutants protocols.<module> and activates one only in a module of
    # that __name__. So the copy's protocols load as fewshot_bench.protocols.<module>, executed under
    # the name protocols.<module> (aliased in sys.modules), and run the copy's mutants.
    import importlib.abc
    import importlib.util
    import sys

    class _MutantProtocols(importlib.abc.MetaPathFinder, importlib.abc.Loader):
        def find_spec(self, fullname, path=None, target=None):
            if fullname.startswith("fewshot_bench.protocols."):
                file = REPO / "protocols" / f"{fullname.rpartition('.')[2]}.py"
                return importlib.util.spec_from_file_location(fullname, file, loader=self) if file.is_file() else None
            return None

        def create_module(self, spec):
            return None

        def exec_module(self, module):
            full, short = module.__name__, module.__name__.removeprefix("fewshot_bench.")
            sys.modules[short] = module
            module.__name__ = short
            try:
                exec(compile(Path(module.__file__).read_text(), module.__file__, "exec"), module.__dict__)
            finally:
                module.__name__ = full

    sys.meta_path.insert(0, _MutantProtocols())


def _real_data_root() -> Path | None:
    checkout = REPO.parent if REPO.name == "mutants" else REPO  # mutmut's copy sits inside the checkout
    for candidate in (os.environ.get("FEWSHOT_BENCH_DATA"), checkout.parent / "shared" / "data"):
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
