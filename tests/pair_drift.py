"""What Koch's pair training does to one-shot accuracy, epoch by epoch: a measurement, not a test.

Trains one conv twin preset (with ``--set``-style overrides) on the background and, before
training and after every epoch, scores the same validation trials (the validation alphabets'
tuning trials, never a test class) three ways: the twin's own head (weighted L1 of the sigmoid
embedding), plain L1 between the sigmoid embeddings, and L1 between the fc layer's inputs (the flat
conv features); and the share of embedding units saturated (below 0.02 or above 0.98), with the
training loss. Where the head's accuracy falls while a plain distance holds, the head is what the
pairs overfit; where the conv features' accuracy stays near its untrained value, they barely learn.

    FEWSHOT_BENCH_DATA=../shared/data python tests/pair_drift.py koch_tuned init=paper_gain epochs=10
"""
import sys

import numpy as np
import torch

from fewshot_bench.api import METHODS, PROTOCOLS
from fewshot_bench.evaluation import shared_images
from fewshot_bench.imageset import to_tensor
from fewshot_bench.learning.networks import build_network


def nearest_accuracy(features: torch.Tensor, indexed, trial_sets) -> float:
    """The share of queries whose nearest support (L1) is the answer."""
    hits = [(torch.cdist(features[q].float(), features[s].float(), p=1).argmin(1).numpy() == ts.answer)
            for (q, s), ts in zip(indexed, trial_sets)]
    return float(np.concatenate(hits).mean())


def main(preset: str, overrides: list[str], val_trials: int = 1600) -> None:
    protocol_cls = PROTOCOLS.get("omniglot20")
    protocol = protocol_cls(protocol_cls.make_config({}))
    background, tuning = protocol.background(), protocol.tuning_sets(val_trials, 0)
    images, indexed = shared_images(tuning)
    options = dict(o.split("=", 1) for o in overrides)
    method_cls = METHODS.get("conv_siamese")
    method = method_cls(method_cls.make_config(preset, options), seed=0, preset=preset)
    x = to_tensor(images, method.config.input_size).unsqueeze(1)
    print(f"{preset} {' '.join(overrides)}: {val_trials} validation trials")
    print(f"{'epoch':>5s} {'loss':>6s} {'head':>6s} {'L1 emb':>7s} {'L1 conv':>8s} {'saturated':>10s}")

    def after_epoch(history):
        net = method.model_.eval()
        with torch.inference_mode():
            conv = net._features(x)
            embedding = net.embed(x)
        head_acc = method._validate(tuning)  # what training's validation scores: the twin's own head
        net.train()
        saturated = float(((embedding < 0.02) | (embedding > 0.98)).float().mean())
        h = history[-1] if history else {"epoch": -1, "loss": float("nan")}  # none: the untrained network
        print(f"{h['epoch'] + 1:5d} {h['loss']:6.3f} {100 * head_acc:6.1f} {100 * nearest_accuracy(embedding, indexed, tuning):7.1f} "
              f"{100 * nearest_accuracy(conv, indexed, tuning):8.1f} {100 * saturated:9.1f}%", flush=True)

    torch.manual_seed(method.seed)  # the weights training starts from (it seeds and builds the same way)
    method.model_ = build_network(method.config).to(method.device)
    after_epoch([])
    method.epoch_callback = after_epoch
    method.work_dir = None
    method.fit(background)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2:])
