"""Run and checkpoint keys made before the families had configs of their own.

Until the families were split, one config of 53 fields served every learned method, and keys
hash a config as a dict (records store it as ``method_config``). So that stored runs and trained
weights stay valid, a family config is keyed as that dict: its own fields, then every field of
the former config it lacks at the value it always had there (the former default, or the value
the family's presets always set, ``Family.former_values``). Options added after runs were stored
are left out at their neutral value, as they always were; options that are new since the split
are left out at their default. New code adds nothing here.
"""
from __future__ import annotations

import dataclasses

# the former config's fields and defaults, in its order
FORMER_DEFAULTS = {
    "network": "conv", "metric": "weighted_l1", "cosine_scale": 0.0, "pool_last": False, "normalise": "none",
    "fce": False, "fce_steps": 5, "hidden": (1024,), "input_size": 105, "channels": (64, 128, 128, 256),
    "kernels": (10, 7, 4, 4), "strides": (), "padding": "valid", "batch_norm": False, "fc_units": 4096,
    "init": "paper", "train_drawers": tuple(range(1, 13)), "distortions": 8, "rotations": False, "reflections": False,
    "test_symmetries": 1, "objective": "pairs", "loss": "bce", "margin": 1.0, "optimizer": "sgd", "pairs": 150000,
    "batch_size": 128, "pair_steps": 0, "lr": (0.01,), "momentum": (0.9,), "momentum_start": 0.5,
    "momentum_ramp_epochs": 20, "l2": (0.0002,), "lr_decay": 0.01, "shot": 1, "across_alphabets": False,
    "inner_steps": 1, "test_inner_steps": 3, "inner_lr": 0.4, "first_order": False, "class_score": "mean",
    "steps_per_epoch": 500, "alphabets_per_batch": 4, "way": 20, "drawers_per_character": 4, "adam_lr": 0.001,
    "weight_decay": 0.0, "members": 1, "precision": "fp32", "epochs": 200, "patience": 20, "keep": "best",
    "device": "auto",
}
# options added after runs were stored under the former config: left out at these neutral values
LATER_OPTIONS = {"test_symmetries": 1, "keep": "best", "pool_last": False, "normalise": "none", "fce": False,
                 "fce_steps": 5, "shot": 1, "across_alphabets": False, "inner_steps": 1, "test_inner_steps": 3,
                 "inner_lr": 0.4, "first_order": False, "class_score": "mean", "cosine_scale": 0.0}


def key_dict(config, former_values: dict) -> dict:
    """``config`` (a family's dataclass) as the dict that keys hash and records store."""
    own = dataclasses.asdict(config)
    defaults = {f.name: f.default for f in dataclasses.fields(config)}
    out = {}
    for name, former in FORMER_DEFAULTS.items():
        value = own.get(name, former_values.get(name, former))
        if name in LATER_OPTIONS and value == LATER_OPTIONS[name]:
            continue
        out[name] = value
    out.update({name: value for name, value in own.items() if name not in FORMER_DEFAULTS and value != defaults[name]})
    return out
