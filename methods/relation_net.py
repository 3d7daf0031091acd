"""Relation networks (Sung et al. 2018): a conv encoder to 64 feature maps and a relation module
that learns the comparison, trained to regress the relation score on 1 for the query's class and
0 for the others (squared error); K shots of a class are compared through their mean feature map
(Sung et al. sum them in K-shot models trained for that K; one model here serves every K).
"""
from fewshot_bench.api import METHODS
from fewshot_bench.learning.method import EpisodicMethod
from fewshot_bench.methods.matching_net import LITERATURE

# cpu: 20-way episodes of 1 shot and 2 queries per class (800 relation pairs each), 4 a step
CPU_PRESET = {**LITERATURE, "across_alphabets": True, "network": "relation", "metric": "euclidean", "objective": "relation",
              "class_score": "prototypes", "way": 20, "shot": 1, "drawers_per_character": 3,
              "alphabets_per_batch": 4, "steps_per_epoch": 200, "epochs": 10, "patience": 10}
TINY_PRESET = {**CPU_PRESET, "input_size": 16, "way": 5, "alphabets_per_batch": 2, "steps_per_epoch": 15, "epochs": 2,
               "patience": 2, "precision": "fp32"}


@METHODS.register("relation_net")
class RelationNet(EpisodicMethod):
    summary = "relation networks (Sung et al. 2018): a learned relation module on conv feature maps"
    presets = {"cpu": CPU_PRESET, "tiny": TINY_PRESET}
    default_preset = "cpu"
