"""The non-convolutional siamese network of Koch 2015's Table 2 (58.3% on the 20-way task):
twin fully connected layers on the flattened image and the same weighted-L1 sigmoid head.

Presets (the same twin, 28x28 inputs, 1024 hidden units, a 512-unit sigmoid embedding):
- ``cpu_pairs``: the paper's recipe, binary cross-entropy on same/different pairs from the
  background alphabets with affine distortions x8 (Adam, 4 epochs of 30k pairs).
- ``cpu``: the recipe and budget of ``conv_siamese --preset cpu`` (one-shot trials, rotated
  alphabets, distortions, two members of 28 epochs x 200 steps, 8-symmetry scoring), so that
  Table 2 shows the MLP and the conv twin under one training recipe.
- ``koch_cpu``: Koch's recipe with layer-wise SGD under a fixed compute, what ``bench tune`` searches.
- ``koch_tuned``: ``koch_cpu`` with the units, rates, momenta and L2 weights ``bench tune`` chose on
  validation alphabets alone; see ``KOCH_TUNED_PRESET``.
- ``koch_schedule``: Koch's recipe at his own schedule (150k pairs x 9 views an epoch, up to 200 epochs,
  patience 20), what the multi-fidelity study searches; see ``KOCH_SCHEDULE_PRESET``.
- ``tiny``: for tests.
"""
from fewshot_bench.api import METHODS
from fewshot_bench.methods.conv_siamese import CPU_PRESET as CONV_CPU_PRESET
from fewshot_bench.methods.conv_siamese import KOCH_CPU_PRESET as CONV_KOCH_CPU_PRESET
from fewshot_bench.data.splits import ALL_DRAWERS
from fewshot_bench.learning.method import TwinMethod
from fewshot_bench.learning.spaces import KOCH_MLP_CPU

MLP_TWIN = {"network": "mlp", "input_size": 28, "hidden": (1024,), "fc_units": 512, "init": "default"}
CPU_PAIRS_PRESET = {
    **MLP_TWIN, "objective": "pairs", "loss": "bce", "optimizer": "adam", "adam_lr": 1e-3,
    "pairs": 30_000, "distortions": 8, "batch_size": 128, "train_drawers": ALL_DRAWERS,
    "epochs": 4, "patience": 4,
}
CPU_PRESET = {**CONV_CPU_PRESET, **MLP_TWIN}
# koch_cpu: Koch's recipe (conv_siamese's koch_cpu: pairs from drawers 1-12, distortions x8,
# layer-wise SGD, early stopping) for the MLP twin, whose layers and units the paper does not give:
# bench tune searches them. Compute cap 20,000 GFLOP over 30 epochs (about 12,000 steps of 128 pairs
# for one 1024-unit layer: 34 ms a step on one AVX2 core, about 8 minutes).
KOCH_CPU_PRESET = {**CONV_KOCH_CPU_PRESET, **MLP_TWIN, "init": "paper", "budget_gflop": 20_000.0}
# koch_tuned: koch_cpu with the settings of the best trial of the study `bench tune --method
# mlp_siamese --preset koch_cpu --protocol omniglot20 --trials 40` (results/tune/
# tune-mlp_siamese-koch_cpu-omniglot20.*): trial 19, 37.97% on 3,200 validation trials of the
# validation alphabets, at its last epoch (30 of 30: the epoch cap bites), the best of the study's
# complete trials. Every value is that trial's, unrounded. Per layer: the hidden layer, the
# embedding, the head.
KOCH_TUNED_PRESET = {
    **KOCH_CPU_PRESET, "hidden": (128,), "fc_units": 640,
    "lr": (0.05263647651782857, 0.021826953880817256, 0.009112499452375092),
    "momentum": (0.9531715930500241, 0.10158760789258844, 0.5049611801541077),
    "l2": (2.0946003708753996e-05, 1.1115586818043942e-06, 9.435260040623696e-05),
}
# koch_schedule: Koch's recipe at his own schedule (section 4 of the paper): each epoch one pass over
# 150k pairs and 8 distorted copies of each (1.35M pair views, 10,547 steps of 128), up to 200 epochs,
# early stopping on validation with patience 20, no compute cap. The MLP twin is cheap enough for it on
# a CPU: one 28x28 step of 128 pairs costs 0.2-8 MFLOP an image, an epoch 44 s (128 hidden units, a
# 640-unit embedding) to 137 s (1024 and 1024) on one AVX512 core in bf16 (`bench speed train --method
# mlp_siamese --preset koch_schedule`). Its units and per-layer values are what `bench tune` searches.
KOCH_SCHEDULE_PRESET = {**KOCH_CPU_PRESET, "pairs": 150_000, "epochs": 200, "patience": 20, "budget_gflop": 0.0}
TINY_PRESET = {**CPU_PAIRS_PRESET, "input_size": 16, "hidden": (32,), "fc_units": 16, "pairs": 64, "distortions": 1,
               "batch_size": 32, "epochs": 1, "patience": 1}


@METHODS.register("mlp_siamese")
class MlpSiamese(TwinMethod):
    summary = "siamese MLP (Koch 2015 Table 2): fully connected twins, weighted-L1 sigmoid head"
    presets = {"cpu": CPU_PRESET, "cpu_pairs": CPU_PAIRS_PRESET, "koch_cpu": KOCH_CPU_PRESET, "koch_tuned": KOCH_TUNED_PRESET,
               "koch_schedule": KOCH_SCHEDULE_PRESET, "tiny": TINY_PRESET}
    default_preset = "cpu"
    preset_sources = {"koch_tuned": {
        "study": "mlp_siamese-koch_cpu-omniglot20", "trial": 19, "score": 37.97, "best_epoch": "30 of 30",
        "scored_on": "3200 tuning trials of omniglot20's validation data (best epoch)",
        "history": "results/tune/tune-mlp_siamese-koch_cpu-omniglot20.csv",
        "command": "bench tune --method mlp_siamese --preset koch_cpu --protocol omniglot20 --trials 40 --threads 1"}}
    architecture_space = KOCH_MLP_CPU  # with Koch's per-layer SGD ranges under optimizer=sgd (spaces.py)
