"""The results store: one JSON file per run, written atomically, read back for tables."""
from __future__ import annotations

import gzip
import json
import math
import os
import secrets
import tempfile
import time
from pathlib import Path

from fewshot_bench.errors import UserError
from fewshot_bench.keys import record_key

SCHEMA = 1


def store_dir(explicit: str | os.PathLike | None = None) -> Path:
    """``--store``, else ``$FEWSHOT_BENCH_STORE``, else ``./runs``."""
    return Path(explicit or os.environ.get("FEWSHOT_BENCH_STORE") or "runs").expanduser()


def new_run_id(method: str, protocol: str, seed: int) -> str:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    return f"{stamp}-{method}-{protocol}-s{seed}-{secrets.token_hex(3)}"


def temp_beside(path: Path, suffix: str = ".tmp") -> tuple[int, str]:
    """A temporary file beside ``path`` (to be renamed onto it) with the mode a plain write would
    give, 0666 less the umask: mkstemp's 0600 would survive the rename and lock a shared store."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=suffix)
    umask = os.umask(0)
    os.umask(umask)
    os.fchmod(fd, 0o666 & ~umask)
    return fd, tmp


def write_atomic(path: Path, content: str | bytes) -> None:
    """Write to a temporary file beside ``path`` then rename: readers never see half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = temp_beside(path)
    try:
        with os.fdopen(fd, "wb" if isinstance(content, bytes) else "w") as f:
            f.write(content)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def save_record(record: dict, store: Path) -> Path:
    path = store / f"{record['run_id']}.json"
    write_atomic(path, json.dumps(record, separators=(",", ":")))  # compact: per-trial lists are long
    return path


def load_records(store: Path) -> list[dict]:
    """Every run record in the store, oldest first (by its microsecond `finished` stamp); unreadable
    files are reported, not fatal."""
    if not store.is_dir():
        raise UserError(f"no results store at {store}; run `bench run ...` first or pass --store")
    records = []
    for path in sorted(store.glob("*.json")):
        try:
            record = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            print(f"warning: skipping unreadable run record {path} ({exc})")
            continue
        if record.get("schema") == SCHEMA:
            records.append(record)
    return sorted(records, key=lambda r: r.get("finished", ""))


# what a packed record leaves out: the fields pictures of single trials need (predictions, scores,
# the images of each set, a verification's pairs); tables read only accuracy, per-trial correctness,
# groups and the training, all of which stay
PICTURE_FIELDS = ("predictions", "answers", "score_correct", "score_chosen", "sets", "same", "first", "second",
                  "pair_scores")


def packed(record: dict) -> dict:
    """A record without its pictures' fields: a tenth of the size or less, and every table the same."""
    return {**record, "packed": True,
            "draws": [{k: v for k, v in d.items() if k not in PICTURE_FIELDS} for d in record.get("draws", [])]}


def pack_records(store: Path, path: Path) -> int:
    """Every record of ``store``, packed, as gzipped JSON lines in ``path`` (by run id, no time stamp
    in the gzip header: the same runs make the same bytes). A store lives on one machine; a pack
    carries its runs to another (``unpack_records``), or into git beside the tables made from them."""
    records = sorted(load_records(store), key=lambda r: r["run_id"])
    lines = "".join(json.dumps(packed(r), separators=(",", ":")) + "\n" for r in records)
    write_atomic(path, gzip.compress(lines.encode(), mtime=0))
    return len(records)


def unpack_records(path: Path, store: Path) -> tuple[int, int]:
    """The records of a pack written into ``store``, except runs it already holds (by run key: a
    run done here is not replaced by a packed one). Returns (added, already there)."""
    try:
        lines = gzip.decompress(path.read_bytes()).decode().splitlines()
        records = [json.loads(line) for line in lines if line.strip()]
    except FileNotFoundError:
        raise UserError(f"no pack at {path}; make one with `bench store pack {path}`") from None
    except (OSError, EOFError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UserError(f"{path} is not a pack of run records ({exc}); make one with `bench store pack`") from None
    for record in records:  # all checked before any is written
        if record.get("schema") != SCHEMA:
            raise UserError(f"{path}: run {record.get('run_id')} has record schema {record.get('schema')}, "
                            f"this bench reads {SCHEMA}")
    present, added = stored_keys(store), 0
    for record in records:
        key = record_key(record)
        if key not in present:
            save_record(record, store)
            present.add(key)
            added += 1
    return added, len(records) - added


_KEYS: dict[Path, tuple[tuple, str | None]] = {}


def stored_keys(store: Path) -> set[str]:
    """The run keys of the store's records, each file parsed once per version of it: reproduces
    waiting on each other poll the store every few seconds, and parsing all its records (hundreds
    of MB of per-trial lists) each time kept a third of a core busy."""
    keys = set()
    for path in store.glob("*.json") if store.is_dir() else ():
        try:
            stat = path.stat()
            version = (stat.st_mtime_ns, stat.st_size, stat.st_ino)
            if _KEYS.get(path, (None,))[0] != version:
                record = json.loads(path.read_text())
                _KEYS[path] = (version, record_key(record) if record.get("schema") == SCHEMA else None)
        except (OSError, json.JSONDecodeError):
            continue  # load_records reports unreadable files
        if _KEYS[path][1]:
            keys.add(_KEYS[path][1])
    return keys


def training_seconds(record: dict, records: list[dict] = ()) -> float:
    """What training the run's weights cost. A run that reused a checkpoint only loaded it: its
    cost is the training run's time, found among ``records`` by the identical training history;
    failing that, the recorded epochs' seconds of the slowest ensemble member (members train side
    by side, one process each, where there are the cores for it)."""
    training = record.get("training") or {}
    if not training.get("reused_checkpoint"):
        return float(record["train_seconds"])
    for other in records:
        trained = other.get("training") or {}
        if not trained.get("reused_checkpoint") and trained.get("history") == training["history"]:
            return float(other["train_seconds"])
    return epoch_seconds(training["history"]) or float(training["epoch_seconds"])


def training_budget(record: dict) -> dict | None:
    """What the run's weights cost to train, all members together: optimiser steps, images seen,
    GFLOP (``epoch_gflop``), seconds (the epochs' own, of the slowest member: a training resumed
    across processes counts every epoch once), and whether it was still improving at the end
    (``still_improving``). None for a method that does not train."""
    training = record.get("training")
    if not training:
        return None
    history = training["history"]
    return {"steps": sum(h.get("steps", 0) for h in history),
            "images": sum(h.get("images", 0) for h in history),
            "gflop": sum(map(epoch_gflop, history)),
            "seconds": epoch_seconds(history),
            "precision": training_precision(history),
            "still_improving": still_improving(history, training.get("validation_trials", 0))}


def training_precision(history: list[dict]) -> str:
    """What the training steps ran in: "bf16" (autocast), "fp32", or "bf16+fp32" for a training
    resumed on another machine; epochs recorded without the field count as fp32."""
    kinds = {"bf16" if h.get("bf16") else "fp32" for h in history}
    return "+".join(sorted(kinds)) or "fp32"


def epoch_gflop(epoch: dict) -> float:
    """An epoch's training compute: its first step counted (forward and backward) per image, times
    the images of all its steps, so that batches of varying size (the trial loss's alphabets) count
    what they cost; epochs recorded before ``step_images`` existed: the first step times the steps."""
    if epoch.get("step_images"):
        return epoch["step_gflop"] * epoch.get("images", 0) / epoch["step_images"]
    return epoch.get("step_gflop", 0.0) * epoch.get("steps", 0)


def epoch_seconds(history: list[dict]) -> float:
    """The recorded epochs' seconds of the slowest ensemble member (members train side by side)."""
    per_member: dict = {}
    for epoch in history:
        per_member[epoch.get("member")] = per_member.get(epoch.get("member"), 0.0) + epoch["seconds"]
    return max(per_member.values(), default=0.0)


def still_improving(history: list[dict], validation_trials: int = 0) -> bool | None:
    """Whether a training was still improving when it stopped, per member (any member counts).

    With validation accuracies: the best of the last quarter of epochs beats the best before it by
    more than the validation's 95% binomial half-width (``validation_trials`` trials). Without
    (a fixed budget on all training classes): the last quarter's mean training loss is more than 5%
    below the quarter's before it. None (unknown) for trainings of fewer than 4 epochs."""
    by_member: dict = {}
    for h in history:
        by_member.setdefault(h.get("member"), []).append(h)
    verdicts = []
    for epochs in by_member.values():
        n = len(epochs)
        if n < 4:
            continue
        q = n // 4
        last, before = epochs[-q:], epochs[:-q]
        accuracies = [h.get("validation_accuracy") for h in epochs]
        if validation_trials and all(a is not None for a in accuracies):
            best_before = max(h["validation_accuracy"] for h in before)
            half = 1.96 * (best_before * (1 - best_before) / validation_trials) ** 0.5
            verdicts.append(max(h["validation_accuracy"] for h in last) - best_before > half)
        else:
            previous = epochs[-2 * q:-q]
            mean = lambda part: sum(h["loss"] for h in part) / len(part)  # noqa: E731
            verdicts.append(mean(last) < 0.95 * mean(previous))
    return any(verdicts) if verdicts else None


LOSS_BAND = 0.01  # a training loss never 1% below a constant guess's is a network that learned nothing


def constant_loss_of(config: dict | None) -> float | None:
    """The constant guess's loss a record's config implies, for trainings recorded before the check
    stored it: Koch's balanced pairs under the cross-entropy, ln 2; None where it depends on the data."""
    config = config or {}
    if config.get("objective", "pairs") == "pairs" and config.get("loss", "bce") == "bce":
        return math.log(2)
    return None


def learning_check(history: list[dict], config: dict | None = None) -> dict:
    """Whether a training learned, per member (any member that did not counts for the training).

    A member did not learn when its best validation accuracy stays inside the untrained network's
    95% interval (measured on the same validation trials before the first step), or when its training
    loss never falls ``LOSS_BAND`` below the loss of a constant guess (an epoch may start above it). ``learned`` is None
    where neither baseline was recorded (trainings from before the check, or without validation and
    a constant guess). ``config`` (the record's ``method_config``) supplies the constant guess of a
    training recorded before the check stored it. Also returns the figures the verdict rests on (the
    first member's) and why."""
    by_member: dict = {}
    for h in history:
        by_member.setdefault(h.get("member"), []).append(h)
    verdicts, reasons, figures = [], [], {}
    for epochs in by_member.values():
        first = epochs[0]
        untrained, half, constant = (first.get(k) for k in ("untrained_validation", "untrained_ci95", "constant_loss"))
        if constant is None and config is not None:  # recorded before the check: what the config implies
            constant = constant_loss_of(config)
        scores = [h["validation_accuracy"] for h in epochs if h.get("validation_accuracy") is not None]
        best = max(scores) if scores else None
        checks = []
        if untrained is not None and best is not None:
            stuck = best <= untrained + (half or 0.0)
            checks.append(stuck)
            if stuck:
                reasons.append(f"best validation {100 * best:.1f}% within the untrained network's "
                               f"{100 * untrained:.1f} ± {100 * (half or 0.0):.1f}%")
        losses = [h.get("loss") for h in epochs]
        if constant and None not in losses:
            flat = min(losses) >= (1 - LOSS_BAND) * constant
            checks.append(flat)
            if flat:
                reasons.append(f"training loss never {LOSS_BAND:.0%} below a constant guess's {constant:.3f} "
                               f"(lowest {min(losses):.3f})")
        if checks:
            verdicts.append(not any(checks))
        if not figures:
            figures = {"untrained_validation": untrained, "untrained_ci95": half, "best_validation": best,
                       "final_loss": losses[-1], "constant_loss": constant}
    learned = all(verdicts) if verdicts else None
    return {"learned": learned, "reason": "; ".join(dict.fromkeys(reasons)) or None, **figures}


def did_not_learn(record: dict) -> str | None:
    """"did not learn at N TFLOP" for a run whose training failed the learning check
    (`learning_check`, from its history: packed and older records too), else None."""
    training = record.get("training")
    if not training or learning_check(training["history"], record.get("method_config"))["learned"] is not False:
        return None
    return f"did not learn at {compute_text(sum(map(epoch_gflop, training['history'])))}"


def compute_text(gflop: float) -> str:
    """A training's compute in TFLOP, or in GFLOP where it is under a tenth of a TFLOP (tests' trainings)."""
    return f"{gflop / 1000:,.1f} TFLOP" if gflop >= 100 else f"{gflop:.2g} GFLOP"
