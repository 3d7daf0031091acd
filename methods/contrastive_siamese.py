"""The convolutional siamese network trained with the contrastive loss of Hadsell, Chopra &
LeCun (2006): Euclidean distance between the twin embeddings, same pairs pulled together,
different pairs pushed beyond a margin m. Its ``cpu`` preset matches ``conv_siamese
--preset cpu_pairs`` (same network, pairs, distortions, optimizer and steps) except for the
loss, so the two losses are compared on identical trials."""
from fewshot_bench.api import METHODS
from fewshot_bench.methods.conv_siamese import CPU_PAIRS_PRESET, TINY_PRESET as CONV_TINY
from fewshot_bench.learning.method import TwinMethod

# 1024 sigmoid features: different characters start about 9 apart, so a margin of 8 is active
CPU_PRESET = {**CPU_PAIRS_PRESET, "metric": "euclidean", "loss": "contrastive", "margin": 8.0}
TINY_PRESET = {**CONV_TINY, "objective": "pairs", "pairs": 64, "batch_size": 32, "metric": "euclidean",
               "loss": "contrastive", "margin": 2.0}


@METHODS.register("contrastive_siamese")
class ContrastiveSiamese(TwinMethod):
    summary = "conv siamese network trained with the contrastive loss (Hadsell et al. 2006), Euclidean metric"
    presets = {"cpu": CPU_PRESET, "tiny": TINY_PRESET}
    default_preset = "cpu"
