"""How much of the input a freshly initialised twin keeps: a measurement, not a test.

For each preset (and the same preset with Koch's init scaled to fan-in, "paper_gain", and with
PyTorch's default initialisation), 256 background images
(64 at 105x105) go through the untrained network; for the twin features, the embedding and the
pair logits it prints the spread across images relative to the mean size (0 = every image maps to
the same activations). Koch's N(0, 0.01) weights with 0.5 biases were set for his 105x105 network
(10x10 and 7x7 kernels, 64-256 channels); at a CPU size's small kernels they collapse the input.

    FEWSHOT_BENCH_DATA=../shared/data python tests/init_signal.py conv_siamese koch_cpu koch_tuned paper
"""
import sys

import numpy as np
import torch

from fewshot_bench.api import METHODS, PROTOCOLS
from fewshot_bench.imageset import to_tensor
from fewshot_bench.learning.networks import build_network


def spread(t: torch.Tensor) -> float:
    t = t.flatten(1)
    return float(t.std(0).mean() / (t.abs().mean() + 1e-12))


def main(method: str, presets: list[str]) -> None:
    protocol_cls = PROTOCOLS.get("omniglot20")
    background = protocol_cls(protocol_cls.make_config({})).background()
    rows = np.random.default_rng(0).choice(len(background), 256, replace=False)
    print(f"{'preset':12s} {'init':10s} {'features':>9s} {'embedding':>10s} {'logit std':>10s}")
    for preset in presets:
        for init in ("as set", "paper_gain", "default"):
            cfg = METHODS.get(method).make_config(preset, {} if init == "as set" else {"init": init})
            torch.manual_seed(0)
            net = build_network(cfg).eval()
            x = to_tensor(background.images[rows], cfg.input_size).unsqueeze(1)[:64 if cfg.input_size > 64 else 256]
            with torch.no_grad():
                features, embedding = net._features(x), net.embed(x)
                logits = net.pair_logits(embedding[::2], embedding[1::2])
            print(f"{preset:12s} {cfg.init if init == 'as set' else init:10s} {spread(features):9.4f} "
                  f"{spread(embedding):10.5f} {float(logits.std()):10.5f}")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2:])
