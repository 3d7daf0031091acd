"""Epochs of the paper preset that fit the time left (argv[1], seconds), from the probe run's record
(`bench run --json` output on stdin): the probe's seconds a step, less a validation's share.
Prints the epochs, or 1 and a shorter epoch's pair_steps where not even one fits."""
import json, math, sys

left = float(sys.argv[1])
record = json.loads(sys.stdin.read().strip().splitlines()[-1])
cfg, first = record["method_config"], record["training"]["history"][0]
validation_s = 0.8 * record["eval_seconds"]  # 320 validation trials an epoch against the probe's 400 test trials
step_s = max(first["seconds"] - validation_s, 0.5 * first["seconds"]) / first["steps"]
epoch_steps = math.ceil(cfg["pairs"] * (1 + cfg["distortions"]) / cfg["batch_size"])
epoch_s = step_s * epoch_steps + validation_s
epochs = int(left // epoch_s)
print(json.dumps({"step_s": step_s, "validation_s": validation_s, "epoch_steps": epoch_steps, "epoch_s": epoch_s,
                  "left_s": left, "epochs": epochs, "step_gflop": first["step_gflop"]}), file=sys.stderr)
print(epochs if epochs >= 1 else f"1 --set pair_steps={max(1, int((left - validation_s) // step_s))}")
