"""SimpleShot (Wang et al. 2019): a Conv-4 trained as an ordinary classifier over all background
classes (each character, and each of its 90-degree turns where the background does not hold
turns as classes already), then thrown away but for its features; test episodes are scored by the
nearest class centroid of CL2N features (centred on the background's mean feature, L2-normalised).

SimpleShot reports no Omniglot figures, so there is no paper recipe to follow here: the ``cpu``
preset trains on the papers' Omniglot data (``recipes.PAPERS``: the split's 1,200 training
characters with their rotations as classes) with minibatches of 256 images, Adam 1e-3 on a cosine,
8 x 300 steps (about 10 minutes on 2 AVX2 cores in fp32).
"""
from fewshot_bench.api import METHODS
from fewshot_bench.learning.method import ClassifierMethod
from fewshot_bench.learning.recipes import PAPERS

# (a classifier draws minibatches of images, not episodes: no across_alphabets)
CPU_PRESET = {**{k: v for k, v in PAPERS.items() if k != "across_alphabets"}, "metric": "euclidean", "objective": "classes", "normalise": "cl2n", "schedule": "cosine",
              "class_score": "prototypes", "batch_size": 256, "steps_per_epoch": 300, "epochs": 8, "patience": 8}
TINY_PRESET = {**CPU_PRESET, "input_size": 16, "channels": (8, 8), "kernels": (3, 3), "batch_size": 16,
               "steps_per_epoch": 3, "epochs": 2, "patience": 2, "precision": "fp32"}


@METHODS.register("simpleshot")
class SimpleShot(ClassifierMethod):
    summary = "SimpleShot (Wang et al. 2019): a pretrained classifier's features, nearest CL2N centroid"
    presets = {"cpu": CPU_PRESET, "tiny": TINY_PRESET}
    default_preset = "cpu"
