"""Prototypical networks (Snell, Swersky & Zemel 2017): a conv embedding trained episodically
on the background alphabets with a softmax over negative squared Euclidean distances to the
class prototypes. In one-shot episodes the prototype is the support embedding itself.

Episodes are within-alphabet (as the test task): 20 characters by 4 drawers per alphabet,
each drawer in turn the support set for the others' queries; 90-degree rotated alphabets
count as new alphabets, and Koch's affine distortions are applied to every image.
"""
from fewshot_bench.api import METHODS
from fewshot_bench.learning.method import EpisodicMethod
from fewshot_bench.methods.conv_siamese import CPU_TRIALS, TINY_TRIALS

# the conv_siamese cpu twin without the sigmoid fc layer and head: 2304 flat conv features
# K shots: the distance to the class's mean embedding (the prototype)
CPU_PRESET = {**CPU_TRIALS, "fc_units": 0, "metric": "euclidean", "epochs": 10, "patience": 10, "class_score": "prototypes"}
TINY_PRESET = {**TINY_TRIALS, "fc_units": 0, "metric": "euclidean", "class_score": "prototypes"}


@METHODS.register("protonet")
class ProtoNet(EpisodicMethod):
    summary = "prototypical networks (Snell et al. 2017), episodic within-alphabet training, Euclidean"
    presets = {"cpu": CPU_PRESET, "tiny": TINY_PRESET}
    default_preset = "cpu"
