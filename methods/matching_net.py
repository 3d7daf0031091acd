"""Matching networks (Vinyals et al. 2016): a Conv-4 embedding (four blocks of 64 3x3 filters,
batch norm, ReLU, 2x2 max-pooling: 64 features at 28x28) and an attention over the support set by
cosine similarity, softmax-normalised and summed per class.

The paper's Omniglot recipe, as the ``paper_<setting>`` presets (one model per test setting, as
the paper trained them):
- data: the split's 1,200 training characters and their rotations as classes (``recipes.PAPERS``);
- episodes: N-way K-shot, as the test setting, classes from all training classes; the paper does
  not give the queries per class or the episodes per update: 5 queries, one episode a step;
- full-context embeddings off: the paper's Omniglot rows use none (``fce=true`` has them);
- optimiser: not given in the paper: Adam at a constant 1e-3; length not given: 20,000 episodes.
- differs: the cosines are scaled by a learned factor (starting at 10). With the bare cosines of
  the paper, a cpu training reached only 63.4% on 320 validation trials of the Vinyals val classes
  (20-way one-shot; loss 2.32 against log 20 = 3.0 at chance): the softmax cannot grow confident.

``cpu_<setting>``: the same, cut to the episodes of ``CPU_EPISODES`` (about 10 minutes each on
2 AVX2 cores in fp32).
"""
from fewshot_bench.api import METHODS
from fewshot_bench.learning.method import EpisodicMethod
from fewshot_bench.learning.recipes import PAPERS, SETTINGS, episodes

VINYALS = {**PAPERS, "metric": "cosine", "cosine_scale": 10.0, "objective": "matching", "class_score": "matching",
           "alphabets_per_batch": 1, "schedule": "constant"}
QUERIES = 5
CPU_EPISODES = {"5w1s": 12_000, "5w5s": 8_000, "20w1s": 6_000, "20w5s": 4_000}


def recipe(way: int, shot: int, total: int) -> dict:
    return {**VINYALS, "way": way, "shot": shot, "drawers_per_character": shot + QUERIES, **episodes(total)}


PRESETS = {**{f"paper_{name}": recipe(way, shot, 20_000) for name, (way, shot) in SETTINGS.items()},
           **{f"cpu_{name}": recipe(way, shot, CPU_EPISODES[name]) for name, (way, shot) in SETTINGS.items()},
           "tiny": {**recipe(5, 1, 6), "input_size": 16, "channels": (8, 8), "kernels": (3, 3),
                    "drawers_per_character": 3, "alphabets_per_batch": 2, "precision": "fp32", **episodes(6, 3)}}


@METHODS.register("matching_net")
class MatchingNet(EpisodicMethod):
    summary = "matching networks (Vinyals et al. 2016): Conv-4, cosine attention, one model per setting"
    presets = PRESETS
    default_preset = "cpu_20w1s"
