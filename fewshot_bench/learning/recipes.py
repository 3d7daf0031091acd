"""What the few-shot papers of Table 4 share in their Omniglot recipes, as config values.

All four papers (Vinyals et al. 2016, Snell et al. 2017, Finn et al. 2017, Sung et al. 2018) train
on Vinyals' 1,200 training characters (the split's ``trainval`` classes, each character's four
90-degree rotations a class of its own), at 28x28, with no other augmentation, and test on the
other 423 characters' rotations. Their presets here are named per test setting where the paper
trained one model per setting (``paper_20w1s``), or per shot where one served both ways
(Snell's ``paper_1shot``). A ``cpu_*`` preset keeps its paper's recipe and cuts only the number
of training steps (each file says by how much).

On Koch's background alphabets (no turned classes there) the same turns are had with
``--set rotations=true`` (a turned alphabet is an alphabet of its own).
"""
from __future__ import annotations

from fewshot_bench.learning.networks import CONV4

ALL_DRAWERS = tuple(range(1, 21))

# the test settings of the papers' Omniglot tables: (way, shot)
SETTINGS = {"5w1s": (5, 1), "5w5s": (5, 5), "20w1s": (20, 1), "20w5s": (20, 5)}

# the papers' data and network: Conv-4 at 28x28, every drawer of a training class, classes drawn
# from all alphabets, no distortions or extra turns; Adam at 1e-3; the final weights kept (the
# papers' budgets are fixed here: no validation classes are left when training on trainval)
PAPERS = {**CONV4, "train_drawers": ALL_DRAWERS, "across_alphabets": True, "distortions": 0, "rotations": False,
          "adam_lr": 1e-3, "keep": "last", "precision": "auto"}


def episodes(total: int, per_epoch: int = 200) -> dict:
    """A fixed budget of ``total`` steps in epochs of ``per_epoch`` (progress and checkpoints per
    epoch), with no early stopping."""
    per_epoch = min(per_epoch, total)
    assert total % per_epoch == 0, f"{total} steps are no whole number of epochs of {per_epoch}"
    epochs = total // per_epoch
    return {"steps_per_epoch": per_epoch, "epochs": epochs, "patience": epochs}
