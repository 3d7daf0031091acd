"""MAML (Finn, Abbeel & Levine 2017) on Omniglot: a network of four strided conv blocks and a
linear classifier whose initialisation is meta-learned so that a few gradient steps on a new
episode's support classify its queries. Second-order by default; ``first_order=true`` drops the
second derivatives (their first-order approximation). Batch norm uses each batch's own
statistics, in training and at test, as in their code (transductive, as Nichol et al. 2018 note).

The paper's Omniglot recipe (their section 5.1 and appendix A.1), as the ``paper_<setting>``
presets, one model per setting with ``way`` outputs:
- data: the split's 1,200 training characters and their rotations as classes (``recipes.PAPERS``);
- network: four blocks of 64 3x3 convolutions with stride 2, batch norm, ReLU; a linear layer;
- 5-way: meta-batches of 32 tasks, one inner step of size 0.4, 3 steps at test;
  20-way: meta-batches of 16 tasks, 5 inner steps of size 0.1; at test we take the same 5 steps
  (recalled, not checked against their code here);
- queries: K per class, as the support (their code samples 2K images per class);
- optimiser: Adam at a constant 1e-3; 60,000 meta-steps.

``cpu_<setting>``: first-order (Nichol et al. 2018's Table 1 gives first-order MAML's own
Omniglot figures: 98.3 / 99.2 / 89.4 / 97.9) and cut to the meta-steps of ``CPU_STEPS`` (about
10 minutes each on 2 AVX2 cores in fp32); otherwise the paper's recipe.
"""
from fewshot_bench.api import METHODS
from fewshot_bench.learning.method import MamlMethod
from fewshot_bench.learning.recipes import PAPERS, SETTINGS, episodes

FINN = {**PAPERS, "network": "maml", "objective": "maml", "schedule": "constant", "precision": "fp32"}
BY_WAY = {5: {"alphabets_per_batch": 32, "inner_steps": 1, "inner_lr": 0.4, "test_inner_steps": 3},
          20: {"alphabets_per_batch": 16, "inner_steps": 5, "inner_lr": 0.1, "test_inner_steps": 5}}
CPU_STEPS = {"5w1s": 2_000, "5w5s": 1_000, "20w1s": 700, "20w5s": 240}


def recipe(name: str, total: int) -> dict:
    way, shot = SETTINGS[name]
    return {**FINN, **BY_WAY[way], "way": way, "shot": shot, "drawers_per_character": 2 * shot,
            **episodes(total, 40 if total % 100 else 100)}


PRESETS = {**{f"paper_{name}": recipe(name, 60_000) for name in SETTINGS},
           **{f"cpu_{name}": {**recipe(name, CPU_STEPS[name]), "first_order": True} for name in SETTINGS},
           "tiny": {**recipe("5w1s", 6), "input_size": 16, "alphabets_per_batch": 2, "test_inner_steps": 1,
                    **episodes(6, 3)}}


@METHODS.register("maml")
class MAML(MamlMethod):
    summary = "MAML (Finn et al. 2017): a meta-learned initialisation adapted per episode, one model per setting"
    presets = PRESETS
    default_preset = "cpu_20w1s"
