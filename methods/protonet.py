"""Prototypical networks (Snell, Swersky & Zemel 2017): a Conv-4 embedding trained on episodes
with a softmax over negative squared Euclidean distances to the class prototypes (the mean
embedding of a class's support; with one shot, the support itself).

The paper's Omniglot recipe (their section 3.1), as the ``paper_*`` presets:
- data: Vinyals' 1,200 training characters with their rotations as classes (4,800 classes, the
  split's trainval), 28x28 (``recipes.PAPERS``);
- network: four blocks of 64 3x3 filters, batch norm, ReLU and 2x2 max-pooling: 64 features;
- episodes: 60 classes drawn from all training classes, 5 queries per class, the training shot
  matched to the test shot (one model for 1-shot, one for 5-shot; each serves 5- and 20-way);
- optimiser: Adam, learning rate 1e-3 halved every 2,000 episodes, no regularisation but batch norm;
- length: the paper trains until the validation loss stops improving and gives no count; its
  code runs epochs of 100 episodes with a patience of 200 epochs. ``paper_*``: 20,000 episodes.

``cpu_1shot`` / ``cpu_5shot``: the same recipe cut to 1,600 / 1,000 episodes (about 11 minutes
each on 2 AVX2 cores in fp32), so the learning rate never halves.

``twin``: not Snell's recipe: Koch's cpu twin (conv_siamese ``cpu``) without its fc layer and
head, trained with the prototype loss on within-alphabet batches with Koch's distortions (the
"beyond the paper" row of Tables 1-3).
"""
from fewshot_bench.api import METHODS
from fewshot_bench.learning.method import EpisodicMethod
from fewshot_bench.learning.recipes import PAPERS, episodes
from fewshot_bench.methods.conv_siamese import CPU_TRIALS, TINY_TRIALS

SNELL = {**PAPERS, "metric": "euclidean", "objective": "prototypes", "class_score": "prototypes", "way": 60,
         "alphabets_per_batch": 1, "schedule": "halving", "halve_every": 2000}
PAPER_1SHOT = {**SNELL, "shot": 1, "drawers_per_character": 6, **episodes(20_000)}
PAPER_5SHOT = {**SNELL, "shot": 5, "drawers_per_character": 10, **episodes(20_000)}
CPU_1SHOT = {**PAPER_1SHOT, **episodes(1_600)}
CPU_5SHOT = {**PAPER_5SHOT, **episodes(1_000)}
TWIN_PRESET = {**CPU_TRIALS, "fc_units": 0, "metric": "euclidean", "epochs": 10, "patience": 10,
               "class_score": "prototypes"}
TINY_PRESET = {**TINY_TRIALS, "fc_units": 0, "metric": "euclidean", "class_score": "prototypes"}
TINY_EPISODES = {**CPU_1SHOT, "input_size": 16, "channels": (8, 8), "kernels": (3, 3), "way": 6,
                 "drawers_per_character": 3, "precision": "fp32", **episodes(6, 3)}


@METHODS.register("protonet")
class ProtoNet(EpisodicMethod):
    summary = "prototypical networks (Snell et al. 2017): Conv-4, 60-way episodes, shot-matched"
    presets = {"paper_1shot": PAPER_1SHOT, "paper_5shot": PAPER_5SHOT, "cpu_1shot": CPU_1SHOT,
               "cpu_5shot": CPU_5SHOT, "twin": TWIN_PRESET, "tiny": TINY_PRESET, "tiny_episodes": TINY_EPISODES}
    default_preset = "cpu_1shot"
