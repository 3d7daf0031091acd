"""The GPU check is a ready script: it parses as bash, and its epoch count comes from the speed report."""
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_the_gpu_check_script_is_valid_bash():
    assert subprocess.run(["bash", "-n", str(ROOT / "examples/gpu/check.sh")]).returncode == 0


def test_the_epochs_that_fit_come_from_the_speed_reports_fastest_epoch():
    report = {"device": "NVIDIA H200", "fp32": {"epoch_seconds": 226.0}, "bf16": {"epoch_seconds": 44.0}}
    out = subprocess.run([sys.executable, str(ROOT / "examples/gpu/epochs_from_speed.py"), "390"],
                         input=json.dumps(report), capture_output=True, text=True)
    assert out.returncode == 0 and out.stdout.strip() == "7"  # 390 // (44 + 10)
    slow = subprocess.run([sys.executable, str(ROOT / "examples/gpu/epochs_from_speed.py"), "100"],
                          input=json.dumps({"fp32": {"epoch_seconds": 226.0}}), capture_output=True, text=True)
    assert slow.stdout.strip() == "1"  # at least one epoch, however long
