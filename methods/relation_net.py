"""Relation networks (Sung et al. 2018): a conv encoder to 64 feature maps and a relation module
that learns the comparison, trained to regress the relation score on 1 for the query's class and
0 for the others (squared error).

The paper's Omniglot recipe (their section 4.1), as the ``paper_<setting>`` presets:
- data: the split's 1,200 training characters and their rotations as classes (``recipes.PAPERS``);
- network: an encoder of four blocks of 64 3x3 filters, batch norm and ReLU, the first two
  max-pooled; a relation module of two such blocks on the concatenated maps, 8 hidden units and
  a sigmoid (``networks.RelationNet``);
- episodes: one model per setting, N-way K-shot as the test, with 19 (5w1s), 15 (5w5s), 10 (20w1s)
  or 5 (20w5s) queries per class; the K shots of a class are summed (``pool_shots=sum``);
- optimiser: Adam, 1e-3, halved every 100,000 episodes; 1,000,000 episodes.

``cpu_<setting>``: the same, cut to the episodes of ``CPU_EPISODES`` (about 10 minutes each on
2 AVX2 cores in fp32), so the learning rate never halves.
"""
from fewshot_bench.api import METHODS
from fewshot_bench.learning.method import EpisodicMethod
from fewshot_bench.learning.recipes import PAPERS, SETTINGS, episodes

SUNG = {**PAPERS, "network": "relation", "metric": "euclidean", "objective": "relation", "class_score": "prototypes",
        "pool_shots": "sum", "alphabets_per_batch": 1, "schedule": "halving", "halve_every": 100_000}
QUERIES = {"5w1s": 19, "5w5s": 15, "20w1s": 10, "20w5s": 5}
CPU_EPISODES = {"5w1s": 4_000, "5w5s": 4_800, "20w1s": 1_000, "20w5s": 1_600}


def recipe(name: str, total: int) -> dict:
    way, shot = SETTINGS[name]
    return {**SUNG, "way": way, "shot": shot, "drawers_per_character": shot + QUERIES[name], **episodes(total)}


PRESETS = {**{f"paper_{name}": recipe(name, 1_000_000) for name in SETTINGS},
           **{f"cpu_{name}": recipe(name, CPU_EPISODES[name]) for name in SETTINGS},
           "tiny": {**recipe("5w1s", 30), "input_size": 16, "drawers_per_character": 3, "alphabets_per_batch": 2,
                    "precision": "fp32", **episodes(30, 15)}}


@METHODS.register("relation_net")
class RelationNet(EpisodicMethod):
    summary = "relation networks (Sung et al. 2018): a learned relation module, one model per setting"
    presets = PRESETS
    default_preset = "cpu_20w1s"
