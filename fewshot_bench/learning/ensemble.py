"""Ensembles trained side by side: each member a spawned process with its share of the threads,
its progress forwarded to the parent's bar; Ctrl-C or SIGTERM stops them (they resume from their
checkpoints)."""
from __future__ import annotations

import multiprocessing
import queue as queue_module
from concurrent.futures import ProcessPoolExecutor

import torch

class _QueueProgress:
    """A worker's progress: forwards each step's info line to the parent's bar."""

    def __init__(self, queue, member: int):
        self.queue, self.member = queue, member

    def stage(self, label: str) -> None:
        self.label = label

    def start(self, total) -> None:
        pass

    def advance(self, info: str | None = None) -> None:
        self.queue.put(f"member {self.member + 1} {self.label}: {info or ''}")


def _train_member(cls, config, preset, work_dir, seed, key, data, index, validation, threads, queue, member):
    torch.set_num_threads(threads)
    method = cls(config, seed=seed, preset=preset, work_dir=work_dir)
    method.progress = _QueueProgress(queue, member)
    state, history, reused = method.train(torch.from_numpy(data), index, key, validation)
    return {k: v.numpy() for k, v in state.items()}, history, reused, peak_rss_mib()


def peak_rss_mib() -> float | None:
    """This process's peak resident memory (VmHWM; getrusage would report the parent's peak for a
    spawned child, inherited across the fork before exec). None where /proc is absent."""
    try:
        with open("/proc/self/status") as status:
            return next(int(line.split()[1]) / 1024 for line in status if line.startswith("VmHWM:"))
    except (OSError, StopIteration, ValueError):
        return None


def train_in_processes(cls, config, preset, work_dir, seeds, keys, data, index, validation, workers, progress,
                       steps_per_member: int):
    """Train ensemble members side by side, ``workers`` spawned processes sharing the threads."""
    threads = max(1, torch.get_num_threads() // workers)
    context = multiprocessing.get_context("spawn")
    with context.Manager() as manager, ProcessPoolExecutor(workers, mp_context=context) as pool:
        queue = manager.Queue()
        futures = [pool.submit(_train_member, cls, config, preset, work_dir, seed, key, data.numpy(), index,
                               validation, threads, queue, k) for k, (seed, key) in enumerate(zip(seeds, keys))]
        if progress:
            progress.stage(f"training {len(seeds)} members in {workers} processes")
            progress.start(steps_per_member * len(seeds))
        try:
            while not all(f.done() for f in futures):
                try:
                    info = queue.get(timeout=0.5)
                except queue_module.Empty:
                    continue
                if progress:
                    progress.advance(info)
        except BaseException:  # Ctrl-C or SIGTERM: stop the members (they resume from their checkpoints)
            for process in list(pool._processes.values()):
                process.terminate()
            pool.shutdown(wait=False, cancel_futures=True)
            raise
        results = [f.result() for f in futures]
    return [({k: torch.from_numpy(v) for k, v in state.items()}, history, reused, peak)
            for state, history, reused, peak in results]
