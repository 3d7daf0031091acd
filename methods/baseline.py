"""The pretrained-classifier baseline ("A closer look at few-shot classification", Chen et al.
2019; SimpleShot, Wang et al. 2019): a Conv-4 trained as an ordinary classifier over all
background classes (each character, and each of its 90-degree turns where the background does not
hold turns as classes already), then thrown away but for its features; test episodes are scored by
the nearest class centroid of CL2N features (centred on the background's mean feature, L2-normalised).
"""
from fewshot_bench.api import METHODS
from fewshot_bench.learning.method import ClassifierMethod
from fewshot_bench.methods.matching_net import LITERATURE

# cpu: minibatches of 256 images, 12 x 300 steps
CPU_PRESET = {**LITERATURE, "metric": "euclidean", "objective": "classes", "normalise": "cl2n",
              "class_score": "prototypes", "batch_size": 256, "steps_per_epoch": 300, "epochs": 12,
              "patience": 12}
TINY_PRESET = {**CPU_PRESET, "input_size": 16, "channels": (8, 8), "kernels": (3, 3), "batch_size": 16,
               "steps_per_epoch": 3, "epochs": 2, "patience": 2, "precision": "fp32"}


@METHODS.register("baseline")
class Baseline(ClassifierMethod):
    summary = "pretrained classifier + nearest CL2N centroid (Chen et al. 2019, SimpleShot)"
    presets = {"cpu": CPU_PRESET, "tiny": TINY_PRESET}
    default_preset = "cpu"
