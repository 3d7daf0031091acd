"""Benchmarks kept in the repo (``bench speed NAME``): each prints medians and ratios
measured in the same process, since a shared machine is noisy."""
from __future__ import annotations

import os
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch


def timed(fn, repeats: int) -> list[float]:
    out = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        out.append(time.perf_counter() - start)
    return out


def load(root: Path, repeats: int = 5) -> dict:
    """Cold (decode both Omniglot zips into a fresh cache) and warm (read the cache) loads."""
    from fewshot_bench.data.datasets import load_omniglot

    old = os.environ.get("FEWSHOT_BENCH_CACHE")
    with tempfile.TemporaryDirectory() as cache:
        os.environ["FEWSHOT_BENCH_CACHE"] = cache
        try:
            cold = timed(lambda: load_omniglot(root), 1)[0]
            warm = timed(lambda: load_omniglot(root), repeats)
        finally:
            if old is None:
                del os.environ["FEWSHOT_BENCH_CACHE"]
            else:
                os.environ["FEWSHOT_BENCH_CACHE"] = old
    return {"cold_s": cold, "warm_median_s": statistics.median(warm), "warm_runs_s": warm}


def mhd(root: Path, sets: int = 4, repeats: int = 3) -> dict:
    """Our batched MHD against a straightforward per-pair scipy cdist loop, same trial sets."""
    from scipy.spatial.distance import cdist

    from fewshot_bench.api import METHODS, PROTOCOLS

    trial_sets = PROTOCOLS.get("omniglot20")(data_root=root).trial_sets(0)[:sets]
    method = METHODS.get("mhd")()

    def points(img):
        p = np.argwhere(img > 0.5).astype(float)
        return p - p.mean(0)

    def reference():
        out = []
        for ts in trial_sets:
            m = np.empty((len(ts.queries), len(ts.support)))
            for i, q in enumerate(ts.queries):
                for j, s in enumerate(ts.support):
                    d = cdist(points(q), points(s))
                    m[i, j] = -max(d.min(1).mean(), d.min(0).mean())
            out.append(m)
        return out

    def ours():
        return [method.score(method.prepare(ts.queries), method.prepare(ts.support)).numpy() for ts in trial_sets]

    ref_t, our_t = [], []
    for _ in range(repeats):  # interleaved, so load changes hit both alike
        ref_t += timed(reference, 1)
        our_t += timed(ours, 1)
    diff = max(np.abs(a - b).max() for a, b in zip(reference(), ours()))
    same_argmax = all((a.argmax(1) == b.argmax(1)).all() for a, b in zip(reference(), ours()))
    pairs = sum(len(ts.queries) * len(ts.support) for ts in trial_sets)
    return {"pairs": pairs, "scipy_median_s": statistics.median(ref_t), "ours_median_s": statistics.median(our_t),
            "speedup": statistics.median(ref_t) / statistics.median(our_t), "max_abs_diff": float(diff),
            "same_predictions": bool(same_argmax)}


def threads(root: Path, methods=("mhd", "affine"), sets: int = 2, repeats: int = 3) -> dict:
    """Scoring beside a busy neighbour: a process spinning on all cores but one while each method
    scores the same trial sets on all of torch's threads (as before ``scoring_threads``) and on the
    threads ``scoring_threads`` picks (the free cores). Medians, interleaved, and their ratio."""
    import multiprocessing

    from fewshot_bench.api import METHODS, PROTOCOLS
    from fewshot_bench.evaluation import _FREE, scoring_threads

    trial_sets = PROTOCOLS.get("omniglot20")(data_root=root).trial_sets(0)[:sets]
    cores, every = os.cpu_count() or 1, torch.get_num_threads()
    neighbours = [multiprocessing.get_context("spawn").Process(target=_spin, daemon=True) for _ in range(cores - 1)]
    out = {"cores": cores, "busy_neighbours": len(neighbours), "torch_threads": every}
    for p in neighbours:
        p.start()
    try:
        time.sleep(1.0)  # the neighbours running before the free cores are looked at
        _FREE[0] = -1e9
        with scoring_threads():
            out["threads_picked"] = torch.get_num_threads()
        for name in methods:
            method = METHODS.get(name)()
            prepared = [(method.prepare(ts.queries), method.prepare(ts.support)) for ts in trial_sets]
            every_t, picked_t = [], []
            for _ in range(repeats):  # interleaved, so load changes hit both alike
                every_t += timed(lambda: method.score_sets(prepared), 1)
                with scoring_threads():
                    picked_t += timed(lambda: method.score_sets(prepared), 1)
            out[name] = {"every_thread_median_s": statistics.median(every_t),
                         "picked_median_s": statistics.median(picked_t),
                         "speedup": statistics.median(every_t) / statistics.median(picked_t)}
    finally:
        for p in neighbours:
            p.terminate()
    return out


def _spin() -> None:
    while True:
        pass


def train(root: Path, preset: str = "cpu", steps: int = 30, repeats: int = 3, method: str = "conv_siamese",
          limits: bool = True) -> dict:
    """A learned method's training steps on real batches (sampling, rotations, distortions: the
    pipeline, as the trainer runs an epoch) against a bare PyTorch loop of the same network, batch
    shape and loss on random tensors (the objective's ``bare_loss``), in fp32 and (where oneDNN
    supports it) bf16; and the machine's own limit measured in the same run: the step's achieved
    GFLOP/s (forward and backward, counted by torch's FlopCounterMode; the L1 head's cdist is not
    counted) against a large fp32 GEMM's on the same threads (``limits``: the GEMMs and the
    profile of the step's kernels; a check of the paths alone goes without). Any objective: Koch's
    pairs, the trials, episodes, MAML, the classifier."""
    from fewshot_bench.api import METHODS

    cls = METHODS.get(method)
    base = cls(cls.make_config(preset, {"steps_per_epoch": steps}), seed=0, preset=preset)
    device = base.device  # --device: where every auto config runs
    precisions = ["fp32"] + (["bf16"] if use_bf16_auto(device) and base.config.objective != "maml" else [])
    gemm_n = 8192 if device.type == "cuda" else 2048  # a GPU needs a large product to reach its peak
    out = {"method": method, "objective": base.config.objective, "device": device_name(device),
           "isa": torch.backends.cpu.get_cpu_capability(), "onednn_max_isa": os.environ.get("ONEDNN_MAX_CPU_ISA"),
           "threads": torch.get_num_threads(), "images_per_step": None,
           "gemm_gflops": gemm_gflops(gemm_n, device=device) if limits else None,
           # bf16 GEMM only where the device runs bf16 natively (elsewhere it is emulated: no limit worth quoting)
           "bf16_gemm_gflops": gemm_gflops(gemm_n, dtype=torch.bfloat16, device=device)
           if "bf16" in precisions and limits else None}
    for precision in precisions:
        result = _train_speed(cls, preset, steps, repeats, root, precision, limits)
        out["images_per_step"] = result.pop("images_per_step")
        limit = out["bf16_gemm_gflops"] if precision == "bf16" else out["gemm_gflops"]
        out[precision] = {**result, "fraction_of_gemm": result["step_gflops"] / limit if limit else None,
                          "gemm": f"{precision} GEMM on the same {'GPU' if device.type == 'cuda' else 'threads'}"}
    out["preset"], out["bf16_available"] = base.preset, "bf16" in precisions
    return out


def device_name(device: torch.device) -> str:
    return torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU ({torch.get_num_threads()} threads)"


def use_bf16_auto(device: torch.device = torch.device("cpu")) -> bool:
    from fewshot_bench.learning.trainer import use_bf16

    return use_bf16("auto", device)


def synchronize(device: torch.device) -> None:
    """Wait for a GPU's queued work, so that a clock read measures it (nothing to wait for on a CPU)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def gemm_gflops(n: int = 2048, repeats: int = 5, dtype=torch.float32, device=torch.device("cpu")) -> float:
    """Matrix multiply throughput in ``dtype`` on the device (its current threads, on a CPU): its practical peak."""
    a, b = torch.rand(n, n, dtype=dtype, device=device), torch.rand(n, n, dtype=dtype, device=device)

    def product():
        torch.mm(a, b)
        synchronize(device)

    product()
    return 2 * n ** 3 / statistics.median(timed(product, repeats)) / 1e9


def _train_speed(cls, preset, steps, repeats, root, precision, limits: bool = True) -> dict:
    from torch.utils.flop_counter import FlopCounterMode

    from fewshot_bench.imageset import to_tensor
    from fewshot_bench.data.omniglot import background_set, omniglot
    from fewshot_bench.learning.sampling import CharacterIndex
    from fewshot_bench.learning.configs import field_names
    from fewshot_bench.learning.networks import build_network

    options = {"steps_per_epoch": steps, "precision": precision}
    if "pair_steps" in field_names(cls.Config):  # a pairs epoch counts its batches in pair_steps
        options["pair_steps"] = steps
    method = cls(cls.make_config(preset, options), seed=0, preset=preset)
    cfg, device = method.config, method.device
    background = background_set(omniglot(root))
    data = to_tensor(background.images, cfg.input_size)[:, None].to(device)  # decoded once, kept on the device
    index = CharacterIndex(background)
    objective = method.objective_for(index)
    torch.manual_seed(0)
    method.model_ = build_network(cfg, objective.n_classes(), 1).to(device)
    method.bf16_ = precision == "bf16"
    rng, gen = np.random.default_rng(0), torch.Generator(device=device).manual_seed(0)
    objective.prepare(rng)  # Koch's pairs are drawn once, before the first epoch
    optimizer, scheduler = method._optimizer(objective.steps_per_epoch())
    bare_loss = objective.bare_loss(data)
    images_per_step = objective.images

    def step():
        loss = bare_loss()  # same precision
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    def bare():
        for _ in range(steps):
            step()
        synchronize(device)

    def pipeline():  # an epoch as the trainer runs it: batches drawn, distorted, stepped
        losses = []
        for loss in objective.losses(data, rng, gen):
            method._step(loss, optimizer, scheduler, losses)
        synchronize(device)

    method.model_.train()
    counter = FlopCounterMode(display=False)
    with counter:
        step()  # also the warm-up
    kernels = top_kernels(step, device=device) if limits else []
    bare_t, pipe_t = [], []
    for _ in range(repeats):
        bare_t += timed(bare, 1)
        pipe_t += timed(pipeline, 1)
    images = steps * images_per_step
    # a whole epoch of the preset as it trains (its own steps, not this benchmark's), at the pipeline's pace
    full = cls(cls.make_config(preset), seed=0, preset=preset).objective_for(index)
    full.prepare(np.random.default_rng(0))
    epoch_steps = full.steps_per_epoch()
    return {"images_per_step": images_per_step, "bare_images_per_s": images / statistics.median(bare_t),
            "pipeline_images_per_s": images / statistics.median(pipe_t),
            "ratio": statistics.median(bare_t) / statistics.median(pipe_t),
            "step_gflop": counter.get_total_flops() / 1e9,
            "step_gflops": counter.get_total_flops() * steps / statistics.median(bare_t) / 1e9,
            "step_ms": 1000 * statistics.median(bare_t) / steps,
            "epoch_steps": epoch_steps, "epoch_seconds": epoch_steps * statistics.median(pipe_t) / steps,
            "top_kernels": kernels}


def top_kernels(step, steps: int = 3, top: int = 8, device=torch.device("cpu")) -> list[dict]:
    """Where a step's time goes: the operators (on a GPU, the kernels) with the most self time over
    ``steps`` steps (torch.profiler), as percentages of the total."""
    from torch.profiler import ProfilerActivity, profile

    gpu = device.type == "cuda"
    with profile(activities=[ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if gpu else [])) as prof:
        for _ in range(steps):
            step()
        synchronize(device)
    def own(e) -> float:  # a GPU's kernels by their device time (named self_cuda_time_total in older torch)
        if gpu:
            return getattr(e, "self_device_time_total", None) or getattr(e, "self_cuda_time_total", 0)
        return e.self_cpu_time_total

    events = [e for e in prof.key_averages() if own(e) > 0]
    total = sum(map(own, events))
    events.sort(key=own, reverse=True)
    key = "self_gpu_pct" if gpu else "self_cpu_pct"
    return [{"op": e.key, key: round(100 * own(e) / total, 1)} for e in events[:top]]


def evaluate(root: Path, preset: str = "paper", protocol: str = "omniglot20", episodes: int = 1000) -> dict:
    """Time the scoring of one column with (untrained) networks, as many as the preset's ensemble:
    "omniglot20" (400 trials) or "vinyals" (Table 4's slowest column, 20-way 5-shot, ``episodes``
    episodes over the test classes). Each distinct image is embedded once per member and view;
    ``embed_seconds`` is the part of ``seconds`` spent embedding, the rest is the heads' logits."""
    from fewshot_bench.api import METHODS, PROTOCOLS
    from fewshot_bench.evaluation import shared_images
    from fewshot_bench.learning.networks import TwinNet

    cls = METHODS.get("conv_siamese")
    method = cls(cls.make_config(preset), seed=0, preset=preset)
    torch.manual_seed(0)
    method.models_ = [TwinNet(method.config) for _ in range(method.config.members)]
    options = {"way": 20, "shot": 5, "episodes": episodes} if protocol == "vinyals" else {}
    protocol_ = PROTOCOLS.get(protocol)(data_root=root, **options)
    distinct = len(shared_images(protocol_.trial_sets(0))[0])  # and data loaded before timing
    embedded, embed_seconds = [0], [0.0]
    embed = method._embed

    def timed_embed(model, images, *args, **kwargs):
        start = time.perf_counter()
        out = embed(model, images, *args, **kwargs)
        embed_seconds[0] += time.perf_counter() - start
        embedded[0] += len(images)
        return out

    method._embed = timed_embed
    start = time.perf_counter()
    result = protocol_.evaluate(method, 0)
    return {"protocol": protocol, **options, "trials": result["n_trials"], "seconds": time.perf_counter() - start,
            "embed_seconds": embed_seconds[0], "distinct_images": distinct, "images_embedded": embedded[0],
            "members": method.config.members, "views": method.config.test_symmetries,
            "input_size": method.config.input_size, "threads": torch.get_num_threads(),
            "isa": torch.backends.cpu.get_cpu_capability()}


def sweep(root: Path, trainings: int = 8) -> dict:
    """The same sweep of ``trainings`` tiny conv_siamese runs (8 seeds, scored on omniglot20 and
    lake_runs) here in this process and on a local Ray started for it: wall times, their ratio
    (Ray's overhead, start-up included), and whether the records are identical."""
    from fewshot_bench.records import load_records
    from fewshot_bench.experiments.sweep import SweepProgress, plan, run_local, run_ray

    times, records = {}, {}
    with tempfile.TemporaryDirectory() as folder:
        for on in ("local", "ray"):
            store = Path(folder) / on
            start = time.perf_counter()
            todo = plan(["conv_siamese"], ["tiny"], ["omniglot20", "lake_runs"], f"0-{trainings - 1}", None, {},
                        store, root)
            with SweepProgress(None, len(todo), 0, enabled=False) as progress:
                (run_local(todo, store, progress) if on == "local" else run_ray(todo, store, progress, None, 2))
            times[on] = time.perf_counter() - start
            records[on] = sorted(((r["protocol"], r["seed"], r["accuracy"], [d["predictions"] for d in r["draws"]])
                                  for r in load_records(store)), key=lambda x: x[:2])
    return {"trainings": trainings, "runs": len(records["local"]), "local_s": times["local"], "ray_s": times["ray"],
            "ray_over_local": times["ray"] / times["local"], "identical_records": records["local"] == records["ray"],
            "cpus": os.cpu_count()}
