"""Ensembles trained side by side: each member a spawned process with its share of the threads,
its progress forwarded to the parent's bar; Ctrl-C or SIGTERM stops them (they resume from their
checkpoints)."""
from __future__ import annotations

import multiprocessing
import queue as queue_module
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass

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


@dataclass
class Member:
    """What a worker process needs to rebuild one member of an ensemble."""

    cls: type
    config: object
    preset: str | None
    work_dir: object
    seed: int
    key: str  # its checkpoint
    number: int  # its place in the ensemble, for progress lines


def _train_member(member: Member, data, index, validation, threads: int, queue):
    torch.set_num_threads(threads)
    method = member.cls(member.config, seed=member.seed, preset=member.preset, work_dir=member.work_dir)
    method.progress = _QueueProgress(queue, member.number)
    state, history, reused = method.train(torch.from_numpy(data), index, member.key, validation)
    return {k: v.numpy() for k, v in state.items()}, history, reused, peak_rss_mib()


def peak_rss_mib() -> float | None:
    """This process's peak resident memory (VmHWM; getrusage would report the parent's peak for a
    spawned child, inherited across the fork before exec). None where /proc is absent."""
    try:
        with open("/proc/self/status") as status:
            return next(int(line.split()[1]) / 1024 for line in status if line.startswith("VmHWM:"))
    except (OSError, StopIteration, ValueError):
        return None


def train_in_processes(method, seeds: list[int], keys: list[str], data, index, validation, workers: int):
    """Train the members of ``method``'s ensemble (one per seed and checkpoint key) side by side,
    ``workers`` spawned processes sharing the threads; returns what ``TrainingLoop.train`` returns
    for each, and its worker's peak memory."""
    threads = max(1, torch.get_num_threads() // workers)
    context = multiprocessing.get_context("spawn")
    progress = method.progress
    steps = method.objective_for(index).steps_per_epoch() * method.config.epochs
    with context.Manager() as manager, ProcessPoolExecutor(workers, mp_context=context) as pool:
        queue = manager.Queue()
        futures = [pool.submit(_train_member, Member(type(method), method.config, method.preset, method.work_dir,
                                                     seed, key, k), data.numpy(), index, validation, threads, queue)
                   for k, (seed, key) in enumerate(zip(seeds, keys))]
        if progress:
            progress.stage(f"training {len(seeds)} members in {workers} processes")
            progress.start(steps * len(seeds))
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
