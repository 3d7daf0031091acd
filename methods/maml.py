"""MAML (Finn, Abbeel & Levine 2017) on Omniglot: a network of four strided conv blocks and a
linear classifier whose initialisation is meta-learned so that a few gradient steps on a new
episode's support classify its queries. Second-order by default; ``first_order=true`` drops the
second derivatives (their first-order approximation).

The classifier has ``way`` outputs (20): an episode of fewer classes adapts and reads the first
ones, so one network serves 5- and 20-way tests (Finn et al. trained one per way). Batch norm uses
each batch's own statistics, in training and at test, as in their code.
"""
from fewshot_bench.api import METHODS
from fewshot_bench.learning.method import MamlMethod
from fewshot_bench.methods.matching_net import LITERATURE

# the paper's 20-way Omniglot setting: 5 inner steps of size 0.1 in training and at test, meta
# batches of 16 tasks, one query per class, Adam 1e-3 (60,000 meta-steps: beyond a CPU)
PAPER_PRESET = {**LITERATURE, "across_alphabets": True, "network": "maml", "objective": "maml", "input_size": 28, "way": 20, "shot": 1,
                "drawers_per_character": 2, "alphabets_per_batch": 16, "inner_steps": 5, "test_inner_steps": 5,
                "inner_lr": 0.1, "steps_per_epoch": 1000, "epochs": 60, "patience": 60, "precision": "fp32"}
# cpu: the same steps and sizes, first-order, 8 tasks a step, 25 x 150 meta-steps (about 9 min on
# 2 cores; 12 x 150 reached 73.4% on the 320 Vinyals val trials, 20-way one-shot, still rising)
CPU_PRESET = {**PAPER_PRESET, "first_order": True, "alphabets_per_batch": 8, "steps_per_epoch": 150,
              "epochs": 25, "patience": 25}
TINY_PRESET = {**CPU_PRESET, "input_size": 16, "inner_steps": 1, "test_inner_steps": 1,
               "alphabets_per_batch": 2, "steps_per_epoch": 3, "epochs": 2, "patience": 2, "first_order": False}


@METHODS.register("maml")
class MAML(MamlMethod):
    summary = "MAML (Finn et al. 2017): a meta-learned initialisation adapted by gradient steps per episode"
    presets = {"paper": PAPER_PRESET, "cpu": CPU_PRESET, "tiny": TINY_PRESET}
    default_preset = "cpu"
