"""The non-convolutional siamese network of Koch 2015's Table 2 (58.3% on the 20-way task):
twin fully connected layers on the flattened image, the same weighted-L1 sigmoid head and
binary cross-entropy on same/different pairs from the background alphabets."""
from fewshot_bench.api import METHODS
from fewshot_bench.splits import ALL_DRAWERS
from fewshot_bench.twin import TwinMethod

CPU_PRESET = {
    "network": "mlp", "input_size": 28, "hidden": (1024,), "fc_units": 512, "init": "default",
    "objective": "pairs", "loss": "bce", "optimizer": "adam", "adam_lr": 1e-3,
    "pairs": 30_000, "distortions": 8, "batch_size": 128, "train_drawers": ALL_DRAWERS,
    "epochs": 4, "patience": 4,
}
TINY_PRESET = {**CPU_PRESET, "input_size": 16, "hidden": (32,), "fc_units": 16, "pairs": 64, "distortions": 1,
               "batch_size": 32, "epochs": 1, "patience": 1}


@METHODS.register("mlp_siamese")
class MlpSiamese(TwinMethod):
    summary = "siamese MLP (Koch 2015 Table 2): fully connected twins, weighted-L1 sigmoid head, pair BCE"
    presets = {"cpu": CPU_PRESET, "tiny": TINY_PRESET}
    default_preset = "cpu"
