"""Full epochs of the paper preset that fit the seconds left (argv[1]), from `bench speed train --device
cuda --preset paper`'s report on stdin: its measured seconds an epoch (the fastest precision's), plus a
validation's share. Prints the epochs (at least 1)."""
import json
import sys

VALIDATION_S = 10.0  # 320 validation trials an epoch, embedded on the GPU

left = float(sys.argv[1])
report = json.loads(sys.stdin.read())
epoch_s = min(report[p]["epoch_seconds"] for p in ("fp32", "bf16") if p in report) + VALIDATION_S
epochs = max(1, int(left // epoch_s))
print(json.dumps({"epoch_s": epoch_s, "left_s": left, "epochs": epochs, "device": report.get("device")}), file=sys.stderr)
print(epochs)
