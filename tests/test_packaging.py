"""methods/ and protocols/ install inside the fewshot_bench namespace, from a wheel too."""
import os
import subprocess
import sys
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_wheel_maps_methods_and_protocols_under_fewshot_bench(tmp_path):
    subprocess.run([sys.executable, "-m", "pip", "wheel", str(REPO), "--no-deps", "--no-build-isolation",
                    "-q", "-w", str(tmp_path)], check=True, capture_output=True, timeout=300)
    wheel = next(tmp_path.glob("fewshot_bench-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    assert "fewshot_bench/methods/conv_siamese.py" in names
    assert "fewshot_bench/protocols/omniglot20.py" in names
    assert not any(n.startswith(("methods/", "protocols/", "tests/")) for n in names)
    entry = next(n for n in names if n.endswith("entry_points.txt"))
    assert "bench = fewshot_bench.cli.main:main" in zipfile.ZipFile(wheel).read(entry).decode()

    # the installed wheel (not this checkout) registers every built-in
    target = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(target), str(wheel)],
                   check=True, capture_output=True, timeout=300)
    code = ("import fewshot_bench, sys; from fewshot_bench.api import METHODS, PROTOCOLS; "
            "print(fewshot_bench.__file__); print(METHODS.names()); print(PROTOCOLS.names())")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path,
                         env={**os.environ, "PYTHONPATH": str(target)}, timeout=120, check=True).stdout
    assert out.splitlines()[0].startswith(str(target))
    assert "conv_siamese" in out and "omniglot20" in out and "lake_runs" in out


def test_editable_install_imports_from_this_checkout():
    import fewshot_bench.methods.pixel_1nn as module

    assert Path(module.__file__).resolve() == REPO / "methods" / "pixel_1nn.py"
