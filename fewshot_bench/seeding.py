"""One helper seeds everything; trial draws use their own generators (see protocols)."""
import random
import re

import numpy as np
import torch

from fewshot_bench.errors import UserError


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def parse_seeds(text) -> list[int]:
    """``"3"`` -> [3]; ``"0-9"`` -> [0..9]; ``"0,4,7"`` -> [0, 4, 7]."""
    seeds = []
    for part in str(text).split(","):
        m = re.fullmatch(r"\s*(\d+)\s*(?:-\s*(\d+)\s*)?", part)
        if not m or (m[2] and int(m[2]) < int(m[1])):
            raise UserError(f"bad seed list {text!r}: use a number (3), a range (0-9) or a list (0,4,7)")
        seeds.extend(range(int(m[1]), int(m[2] or m[1]) + 1))
    return seeds


def format_seeds(seeds: list[int]) -> str:
    """The inverse of `parse_seeds`: [0..9] -> ``"0-9"``, [0, 4, 7] -> ``"0,4,7"``."""
    if len(seeds) > 1 and seeds == list(range(seeds[0], seeds[-1] + 1)):
        return f"{seeds[0]}-{seeds[-1]}"
    return ",".join(map(str, seeds))
