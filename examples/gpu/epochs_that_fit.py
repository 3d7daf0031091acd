"""Epochs of the paper preset that fit the time left (argv[1], seconds), from the probe run's record
(`bench run --json` output on stdin): the probe's seconds a step, less a validation's share.
Prints the epochs, or 1 and a shorter epoch's pair_steps where not even one fits."""
import dataclasses
import json
import sys

from fewshot_bench.api import METHODS

left = float(sys.argv[1])
record = json.loads(sys.stdin.read().strip().splitlines()[-1])
first = record["training"]["history"][0]
validation_s = 0.8 * record["eval_seconds"]  # 320 validation trials an epoch against the probe's 400 test trials
step_s = max(first["seconds"] - validation_s, 0.5 * first["seconds"]) / first["steps"]
# a full epoch's batches: the probe's config without its short epoch (pair_steps)
values = {k: tuple(v) if isinstance(v, list) else v for k, v in record["method_config"].items()}
epoch_steps = dataclasses.replace(METHODS.get(record["method"]).Config(**values), pair_steps=0).pair_epoch_steps
epoch_s = step_s * epoch_steps + validation_s
epochs = int(left // epoch_s)
print(json.dumps({"step_s": step_s, "validation_s": validation_s, "epoch_steps": epoch_steps, "epoch_s": epoch_s,
                  "left_s": left, "epochs": epochs, "step_gflop": first["step_gflop"]}), file=sys.stderr)
print(epochs if epochs >= 1 else f"1 --set pair_steps={max(1, int((left - validation_s) // step_s))}")
