"""Keys: short stable hashes that name trainings (checkpoints) and runs (records in the store)."""
from __future__ import annotations

import hashlib
import json

import numpy as np


def fingerprint(*parts) -> str:
    """A short stable hash of configs (JSON-able) and arrays."""
    h = hashlib.sha256()
    for part in parts:
        if isinstance(part, np.ndarray):
            h.update(np.ascontiguousarray(part).tobytes())
        else:
            h.update(json.dumps(part, sort_keys=True, default=str).encode())
    return h.hexdigest()[:16]


def run_key(method, preset, method_config, protocol, protocol_config, seed, trial_seeds) -> str:
    """What determines a run: a store holding a record of this key need not run it again."""
    return fingerprint(method, preset, method_config, protocol, protocol_config, seed, list(trial_seeds))


def record_key(r: dict) -> str:
    return run_key(r["method"], r["preset"], r["method_config"], r["protocol"], r["protocol_config"], r["seed"],
                   r["trial_seeds"])
