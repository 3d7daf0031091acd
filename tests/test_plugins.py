"""Third-party methods: an installed package (entry points) and a single file (--plugin)."""
import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_example_plugin_package_installs_and_runs_through_bench(tmp_path, data_root):
    target = tmp_path / "env"
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation",
                    "--target", str(target), str(REPO / "examples" / "fewshot-bench-cosine")],
                   check=True, capture_output=True, timeout=300)
    env = {**os.environ, "PYTHONPATH": str(target)}
    listed = subprocess.run([sys.executable, "-m", "fewshot_bench.cli", "list"], capture_output=True,
                            text=True, env=env, timeout=120)
    assert "cosine_pixels" in listed.stdout
    run = subprocess.run([sys.executable, "-m", "fewshot_bench.cli", "run", "--method", "cosine_pixels",
                          "--protocol", "omniglot20", "--json", "--no-progress", "--store", str(tmp_path / "s")],
                         capture_output=True, text=True, env=env, timeout=300)
    assert run.returncode == 0, run.stderr
    record = json.loads(run.stdout.strip().splitlines()[-1])
    assert record["method"] == "cosine_pixels" and record["n_trials"] == 400
    assert 0.05 < record["accuracy"] < 1.0


def test_single_file_plugin_runs_and_broken_file_is_one_line(tmp_path, data_root):
    good = tmp_path / "my_method.py"
    good.write_text((REPO / "examples" / "fewshot-bench-cosine" / "fewshot_bench_cosine" / "__init__.py").read_text()
                    + "\nfrom fewshot_bench.api import METHODS\nMETHODS.register('file_cosine')(CosinePixels)\n")
    run = subprocess.run([sys.executable, "-m", "fewshot_bench.cli", "run", "--plugin", str(good), "--method",
                          "file_cosine", "--protocol", "omniglot20", "--no-progress", "--store", str(tmp_path / "s")],
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    bad = tmp_path / "bad.py"
    bad.write_text("import no_such_module_anywhere\n")
    run = subprocess.run([sys.executable, "-m", "fewshot_bench.cli", "run", "--plugin", str(bad), "--method",
                          "pixel_1nn", "--protocol", "omniglot20"], capture_output=True, text=True, timeout=300)
    assert run.returncode == 2 and "Traceback" not in run.stderr
    assert "bad.py failed to load: ModuleNotFoundError" in " ".join(run.stderr.split())
