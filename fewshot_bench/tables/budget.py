"""The controlled comparison (beyond the papers): every learned method on one backbone (Conv-4,
64 channels, 28x28), one data set (the Vinyals train classes, rotations as classes) and one
augmentation (none), each with its own loss and episode shape, trained to one compute budget
counted in FLOPs, and read at 1/8, 1/4, 1/2 and all of it: accuracy against training compute.

A training spends ``BUDGET_GFLOP`` over 8 epochs (its steps per epoch set from a probe step's
counted FLOPs, ``budget_gflop``) at a constant learning rate, so the weights after epoch 1, 2 and 4
(``snapshots``, scored with ``keep=epochN``) are what 1/8, 1/4 and 1/2 of the budget train; one
training serves its four points. Koch's task (omniglot20) trains the same recipes on Koch's
background alphabets (turned alphabets as new ones).

Each method's learning rate is chosen on the val classes first: its paper's Adam rate times 1/3, 1
and 3 (and up to two more factors of 3 while the best lies at the grid's edge), each trained on the
train classes for the first quarter of the budget (seed 0) and scored on 20-way one-shot episodes
of the val classes; the best is the rate of all its budget trainings, on every task. The table
plans those trainings once the choice is stored.
"""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from fewshot_bench.api import METHODS
from fewshot_bench.errors import UserError
from fewshot_bench.records import epoch_gflop, write_atomic
from fewshot_bench.stats import t_interval
from fewshot_bench.tables.base import (TABLES, Cell, PlannedRun, Provenance, Table, by_accuracy, correct_by_row,
                                       machine_line, p_text, paired_test, pyplot)

BUDGET_GFLOP = 15_000.0  # about 5 minutes of a Conv-4 step on 2 AVX2 cores in fp32
EPOCHS = 8
FRACTIONS = {1: "1/8", 2: "1/4", 4: "1/2", 8: "1"}  # snapshot epoch -> share of the budget
SEEDS = 3
LR_FACTORS = (1 / 3, 1.0, 3.0)  # times the preset's (its paper's) Adam learning rate
EXTEND = 2  # more factors of 3 beyond the grid, where its best rate lies at its edge
TUNE_EPOCHS = 2  # the choice trains the budget's first quarter: 2 of its 8 epochs
TUNE_TASK = ("vinyals", {"way": 20, "shot": 1, "test_split": "val"})
TASKS = (("5w1s", "vinyals", {"way": 5, "shot": 1}), ("20w1s", "vinyals", {"way": 20, "shot": 1}),
         ("omniglot20", "omniglot20", {}))
# Conv-4 as options of the twins' config (the literature presets have it already)
CONV4 = {"network": "conv", "input_size": 28, "channels": "64,64,64,64", "kernels": "3,3,3,3", "padding": "same",
         "batch_norm": True, "pool_last": True, "fc_units": 0, "init": "default", "distortions": 0,
         "rotations": False, "train_drawers": ",".join(str(d) for d in range(1, 21)), "precision": "auto"}
# (row, method, preset, options): each method's own loss and episode shape, on the shared backbone
ROWS = (("Prototypical nets (60-way)", "protonet", "cpu_1shot", {}),
        ("Matching nets (20-way)", "matching_net", "cpu_20w1s", {}),
        ("Relation nets (20-way, own encoder)", "relation_net", "cpu_20w1s", {}),
        ("MAML first-order (20-way, own strided Conv-4)", "maml", "cpu_20w1s", {}),
        ("SimpleShot (classifier)", "simpleshot", "cpu", {}),
        ("Conv siamese, trial loss", "conv_siamese", "cpu", {**CONV4, "members": 1, "test_symmetries": 1}),
        ("Conv siamese, pair loss", "conv_siamese", "cpu_pairs", {**CONV4, "pairs": 30_000}),
        ("Contrastive siamese", "contrastive_siamese", "cpu", {**CONV4, "pairs": 30_000}))


# the Table 4 row that trains each method by its paper's recipe (or, for the twins, our presets): the
# notes set each method's largest-budget point beside it
TABLE4_ROWS = {"Prototypical nets (60-way)": "Prototypical nets",
               "Matching nets (20-way)": "Matching nets (scaled cosine)",
               "Relation nets (20-way, own encoder)": "Relation nets",
               "MAML first-order (20-way, own strided Conv-4)": "MAML (first-order)",
               "SimpleShot (classifier)": "SimpleShot",
               "Conv siamese, trial loss": "Conv siamese (our cpu preset)",
               "Conv siamese, pair loss": "Conv siamese (as Vinyals ran it)"}


def budget_options() -> dict:
    return {"budget_gflop": BUDGET_GFLOP, "epochs": EPOCHS, "patience": EPOCHS, "schedule": "constant",
            "snapshots": ",".join(str(e) for e in FRACTIONS)}


def tuning_cells(preset: str, stored=None) -> list[Cell]:
    """Per method, its learning rate times each of ``LR_FACTORS``, trained for the budget's first
    ``TUNE_EPOCHS`` epochs (the same steps per epoch as the budget trainings) and scored on val; where
    the best stored rate is the grid's largest (smallest), the grid grows by another factor of 3 that
    way, up to ``EXTEND`` times."""
    share = BUDGET_GFLOP * TUNE_EPOCHS / EPOCHS
    tune = {"budget_gflop": share, "epochs": TUNE_EPOCHS, "patience": TUNE_EPOCHS, "schedule": "constant",
            "keep": "last"}
    cells = []
    for row, method, method_preset, options in ROWS:
        name = "tiny" if preset == "tiny" else method_preset
        base = METHODS.get(method).make_config(name, {k: str(v) for k, v in options.items()}).adam_lr

        def cell(factor):
            return Cell(row, method, name, {**options, **tune, "adam_lr": float(f"{base * factor:.3g}")},
                        protocols=(TUNE_TASK,), seeds=1)

        factors = list(LR_FACTORS)
        while True:
            row_cells = [cell(f) for f in factors]
            chosen = None if stored is None else chosen_rates(row_cells, stored).get(row)
            if chosen is None:
                break
            rates = [c.options["adam_lr"] for c in row_cells]
            if chosen[0] == rates[-1] and factors[-1] < LR_FACTORS[-1] * 3 ** EXTEND:
                factors.append(factors[-1] * 3)
            elif chosen[0] == rates[0] and factors[0] > LR_FACTORS[0] / 3 ** EXTEND:
                factors.insert(0, factors[0] / 3)
            else:
                break
        cells += row_cells
    return cells


def chosen_rates(cells: list[Cell], stored) -> dict[str, tuple[float, dict[float, float]]]:
    """Row -> (the learning rate with the best val accuracy, every rate's val accuracy), for the rows
    whose tuning runs are all stored."""
    out = {}
    for row in dict.fromkeys(c.row for c in cells):
        records = {c.options["adam_lr"]: stored(c, TUNE_TASK[0], TUNE_TASK[1], 0) for c in cells if c.row == row}
        if None not in records.values():
            accuracy = {lr: 100 * r["accuracy"] for lr, r in sorted(records.items())}
            out[row] = (max(accuracy, key=accuracy.get), accuracy)  # a tie goes to the smaller rate
    return out


def plan_cells(preset: str, stored=None) -> list[Cell]:
    """The tuning cells, then the budget cells of every method whose rate is chosen."""
    if preset not in ("cpu", "tiny"):
        raise UserError(f"budget has cpu and tiny (for tests) preset families, got --preset {preset}")
    tuning = tuning_cells(preset, stored)
    rates = {row: lr for row, (lr, _) in chosen_rates(tuning, stored).items()} if stored else {}
    cells = []
    for epoch in FRACTIONS:  # the full budget's cell fits; the others read its snapshots
        for row, method, method_preset, options in ROWS:
            if row not in rates:
                continue
            for label, protocol, protocol_options in TASKS:
                koch = {"rotations": True} if protocol == "omniglot20" else {}
                cells.append(Cell(row, method, "tiny" if preset == "tiny" else method_preset,
                                  {**options, **budget_options(), **koch, "adam_lr": rates[row],
                                   "keep": f"epoch{epoch}"},
                                  protocols=((protocol, dict(protocol_options)),), seeds=SEEDS))
    return tuning + cells[::-1]  # the full budget first: its run trains, the smaller ones reuse


def is_tuning(run: PlannedRun) -> bool:
    return run.protocol_options.get("test_split") == "val"


@TABLES.register("budget")
class Budget(Table):
    summary = "every learned method on one backbone and one budget: accuracy against training compute"

    def plan(self, preset, stored=None):
        return tuple((p, o) for _, p, o in TASKS), plan_cells(preset, stored)

    def summarise(self, runs: list[PlannedRun], records: list[dict]) -> pd.DataFrame:
        """One row per (method, task, budget share): GFLOPs spent to that snapshot, the mean over
        seeds and its t-interval."""
        groups: dict[tuple, list[PlannedRun]] = {}
        for run in (r for r in runs if not is_tuning(r)):
            epoch = int(run.cell.options["keep"].removeprefix("epoch"))
            groups.setdefault((run.cell.row, task_of(run), epoch), []).append(run)
        out = []
        for (row, task, epoch), group in groups.items():
            done = [r.record for r in group if r.record is not None]
            accuracies = [100 * r["accuracy"] for r in done]
            gflop = [sum(map(epoch_gflop, r["training"]["history"][:epoch])) for r in done]
            mean, half = t_interval(accuracies) if len(accuracies) > 1 else (sum(accuracies) / len(accuracies), float("nan")) \
                if accuracies else (float("nan"), float("nan"))
            out.append({"system": row, "task": task, "adam_lr": group[0].cell.options["adam_lr"],
                        "share": FRACTIONS[epoch], "epoch": epoch,
                        "gflop": sum(gflop) / len(gflop) if gflop else float("nan"), "accuracy": mean,
                        "ci95_seeds": half, "seeds": len(done)})
        return pd.DataFrame(out)

    def write(self, frame, runs, records, out_dir: Path, about: Provenance) -> None:
        out_dir.mkdir(parents=True, exist_ok=True)
        usual = usual_seeds(frame)
        frame.to_csv(out_dir / "budget.csv", index=False)
        lines = [f"# budget: {self.summary}", "", f"- command: `{about.command}`", machine_line(runs),
                 *about.missing_line(len(runs)),
                 f"- backbone Conv-4 (relation nets and MAML keep their papers' variants of it), the Vinyals train "
                 f"classes (omniglot20: Koch's background), no augmentation; each training spends {BUDGET_GFLOP:,.0f} "
                 f"GFLOP over {EPOCHS} epochs at a constant learning rate chosen on the val classes (below), "
                 f"read after epochs {', '.join(map(str, FRACTIONS))} (shares "
                 f"{', '.join(FRACTIONS.values())} of the budget)", seeds_line(usual)]
        for task, part in frame.groupby("task", sort=False):
            lines += ["", f"## {task}", "", "| system | " + " | ".join(FRACTIONS.values()) + " |",
                      "|---" * (len(FRACTIONS) + 1) + "|"]
            for system, cells in part.groupby("system", sort=False):
                by_share = {row["share"]: row for _, row in cells.iterrows()}
                lines.append(f"| {system} | " + " | ".join(cell_text(by_share.get(s), usual)
                                                           for s in FRACTIONS.values()) + " |")
            lines += ["", "Top two at each budget (paired exact McNemar test on the identical trials, seeds paired): "
                      + "; ".join(f"{share}: {top_two(runs, task, epoch)}" for epoch, share in FRACTIONS.items())]
        lines += ["", *reading_lines(frame, runs, _table4(out_dir)), "", *rate_lines(runs)]
        write_atomic(out_dir / "budget.md", "\n".join(lines) + "\n")
        self.plot(frame, out_dir / "budget.png")

    def plot(self, frame: pd.DataFrame, path: Path) -> bool:
        """Accuracy against training GFLOPs (log axis), a line per method with its seed band, a panel per task."""
        plt = pyplot()
        if plt is None or frame.empty:
            return False
        tasks = list(dict.fromkeys(frame["task"]))
        fig, axes = plt.subplots(1, len(tasks), figsize=(4.6 * len(tasks), 4.2))
        for ax, task in zip(axes if len(tasks) > 1 else [axes], tasks):
            for system, part in frame[frame["task"] == task].groupby("system", sort=False):
                part = part.dropna(subset=["accuracy"]).sort_values("gflop")
                if part.empty:
                    continue
                line, = ax.plot(part["gflop"], part["accuracy"], "o-", markersize=3, label=system)
                band = part["ci95_seeds"].fillna(0)
                # a t-interval over 3 seeds can pass 0 or 100: the band stops where accuracy can
                ax.fill_between(part["gflop"], (part["accuracy"] - band).clip(lower=0),
                                (part["accuracy"] + band).clip(upper=100), color=line.get_color(), alpha=0.15)
            ax.set_xscale("log")
            shares = [BUDGET_GFLOP * epoch / EPOCHS for epoch in FRACTIONS]  # ticks at the budget's shares only
            ax.set_xlim(shares[0] / 1.6, shares[-1] * 1.6)
            ax.set_xticks(shares, [f"{g:,.0f}" for g in shares], fontsize=8)
            ax.minorticks_off()
            ax.set_title(task, fontsize=10)
            ax.set_xlabel("training compute (GFLOP, forward and backward)")
            ax.grid(alpha=0.3)
        (axes[0] if len(tasks) > 1 else axes).set_ylabel("accuracy (%)")
        fig.legend(*(axes[0] if len(tasks) > 1 else axes).get_legend_handles_labels(), loc="lower center", ncol=4,
                   fontsize=7, frameon=False)
        fig.suptitle("budget: accuracy against training compute (mean over seeds, band: 95% t-interval, "
                     "cut at 0 and 100)", fontsize=10)
        fig.tight_layout(rect=(0, 0.12, 1, 1))
        fig.savefig(path, dpi=110)
        plt.close(fig)
        return True


def usual_seeds(frame: pd.DataFrame) -> int:
    """The number of training seeds most cells hold (a partial reproduce has cells with fewer)."""
    counts = frame.loc[frame["seeds"] > 0, "seeds"]
    return int(counts.mode().max()) if len(counts) else 0


def seeds_line(usual: int) -> str:
    interval = " ± the 95% t-interval over seeds" if usual > 1 else ""
    over = "one training seed" if usual == 1 else f"mean over {usual} training seeds{interval}"
    return f"- cells: accuracy (%), {over} (of the {SEEDS} planned); a cell with another number of seeds says so"


def cell_text(row, usual: int) -> str:
    """One budget cell: mean (± interval over seeds), and its seed count where it is not the usual one."""
    if row is None or pd.isna(row["accuracy"]):
        return "not run"
    text = f"{row['accuracy']:.1f}" + (f" ± {row['ci95_seeds']:.1f}" if row["seeds"] > 1 else "")
    return text if row["seeds"] == usual else f"{text} ({int(row['seeds'])} of {SEEDS} seeds)"


def rate_lines(runs: list[PlannedRun]) -> list[str]:
    """The learning-rate choice: each method's val accuracy at each rate tried, the chosen one in bold."""
    tuning = [r for r in runs if is_tuning(r)]
    cells = list({id(r.cell): r.cell for r in tuning}.values())
    records = {id(r.cell): r.record for r in tuning}
    chosen = chosen_rates(cells, lambda cell, *_: records[id(cell)])
    options = TUNE_TASK[1]
    lines = ["## Learning rates, chosen on the val classes", "",
             f"Each method's Adam rate times {', '.join(f'{f:.3g}' for f in LR_FACTORS)} (and up to {EXTEND} "
             "further factors of 3 while the best lies at the grid's edge), trained on the train classes for "
             f"{TUNE_EPOCHS} of the {EPOCHS} epochs (seed 0) and scored on {options['way']}-way "
             f"{options['shot']}-shot episodes of the val classes: accuracy (%) by rate; the best (bold; a tie "
             "goes to the smaller rate) trains every budget cell, on every task.", "",
             "| system | val accuracy (%) by Adam rate | chosen |", "|---|---|---|"]
    for row in dict.fromkeys(c.row for c in cells):
        best = chosen.get(row, (None, {}))[0]
        texts = []
        for c in sorted((c for c in cells if c.row == row), key=lambda c: c.options["adam_lr"]):
            lr, record = c.options["adam_lr"], records[id(c)]
            text = f"{lr:g}: " + ("not run" if record is None else f"{100 * record['accuracy']:.1f}")
            texts.append(f"**{text}**" if lr == best else text)
        lines.append(f"| {row} | " + ", ".join(texts) + f" | {'' if best is None else f'{best:g}'} |")
    edge = [row for row, (lr, accuracy) in chosen.items() if lr in (min(accuracy), max(accuracy))]
    if edge:  # the best may lie beyond the grid
        lines += ["", "Chosen at the edge of the grid (a rate beyond it might do better): " + ", ".join(edge)]
    return lines


def task_of(run: PlannedRun) -> str:
    return next(label for label, protocol, options in TASKS
                if protocol == run.protocol and all(run.protocol_options.get(k) == v for k, v in options.items()))


def _correct_at(runs: list[PlannedRun], task: str, epoch: int) -> dict[str, dict[int, list[int]]]:
    return correct_by_row(runs, lambda run: task_of(run) == task and run.cell.options["keep"] == f"epoch{epoch}")


def _compared(correct: dict, first: str, second: str) -> tuple[str, bool]:
    """``first`` against ``second`` (the more accurate first) by a paired test: '>' or a tie, and
    whether it is a tie."""
    test = paired_test(correct[first], correct[second])
    tie = test["p_value"] >= 0.05
    return f"{first} {'= (a tie)' if tie else '>'} {second}, {p_text(test['p_value'])}", tie


def top_two(runs: list[PlannedRun], task: str, epoch: int) -> str:
    """The two best methods at one budget, decided by a paired test on identical trials."""
    correct = _correct_at(runs, task, epoch)
    if len(correct) < 2:
        return "not run"
    return _compared(correct, *by_accuracy(correct)[:2])[0]


def reading_lines(frame: pd.DataFrame, runs: list[PlannedRun], table4: pd.DataFrame | None) -> list[str]:
    """What the figure shows: per task, the order at the smallest and the largest budget read and the
    pairs whose order flips between them (each end decided by a paired test: a flip that is a tie at
    both ends is noise and left out); then each method's largest-budget point beside its row of Table 4."""
    lines = ["## What the figure shows", ""]
    small, full = FRACTIONS[min(FRACTIONS)], FRACTIONS[max(FRACTIONS)]
    for task in dict.fromkeys(frame["task"]):
        first, last = _correct_at(runs, task, min(FRACTIONS)), _correct_at(runs, task, max(FRACTIONS))
        end = [row for row in by_accuracy(last) if row in first]
        if len(end) < 2:
            lines.append(f"- {task}: fewer than two methods read at both {small} and {full} of the budget")
            continue
        start = [row for row in by_accuracy(first) if row in end]
        lines.append(f"- {task}, most accurate first, at {small} of the budget: {_ranked(start)}; at {full}: "
                     f"{_ranked(end)}")
        flips = []
        for i, a in enumerate(start):
            for b in start[i + 1:]:
                if end.index(b) > end.index(a):
                    continue  # the same order at both ends
                (before, tie_before), (after, tie_after) = _compared(first, a, b), _compared(last, b, a)
                ties = tie_before + tie_after
                if ties < 2:
                    flips.append(f"  - {b} passes {a}{' (a tie at one end)' if ties else ''}: at {small} "
                                 f"{before}; at {full} {after}")
        lines += flips or ["  - no pair changes order beyond the noise of a paired test"]
    lines += ["", *table4_lines(frame, table4)]
    return lines


def _ranked(rows: list[str]) -> str:
    return " ".join(f"({i}) {row}" for i, row in enumerate(rows, 1))  # names hold commas


def table4_lines(frame: pd.DataFrame, table4: pd.DataFrame | None) -> list[str]:
    """Each method's largest-budget point beside its Table 4 cell on the same task (that row's own
    recipe: its network, the trainval classes, its training length)."""
    if table4 is None:
        return ["Table 4 is not beside this table (no table4.csv in the output folder): run `bench reproduce "
                "table4 --stored` into it to set each method's largest budget beside its paper's recipe."]
    full = FRACTIONS[max(FRACTIONS)]
    lines = [f"Each method at the full budget ({BUDGET_GFLOP:,.0f} GFLOP, Conv-4, train classes) beside its row of "
             "Table 4 (its paper's recipe, or our preset, on trainval; the GFLOP that row's training spent):", "",
             "| system | task | budget | Table 4 row | Table 4 | Table 4 GFLOP | budget - Table 4 |",
             "|---|---|---|---|---|---|---|"]
    points = frame[frame["share"] == full].dropna(subset=["accuracy"])
    by_system = table4.set_index("system")
    for _, point in points.iterrows():
        row = TABLE4_ROWS.get(point["system"])
        column = point["task"]
        if row is None or row not in by_system.index or column not in by_system.columns:
            continue
        theirs = by_system.at[row, column]
        spent = by_system.at[row, f"{column}_gflop"] if f"{column}_gflop" in by_system.columns else float("nan")
        if pd.isna(theirs):
            lines.append(f"| {point['system']} | {column} | {point['accuracy']:.1f} | {row} | not run | | |")
            continue
        spent_text = "" if pd.isna(spent) else f"{spent:,.0f}"
        lines.append(f"| {point['system']} | {column} | {point['accuracy']:.1f} | {row} | {theirs:.1f} | "
                     f"{spent_text} | {point['accuracy'] - theirs:+.1f} |")
    return lines


def _table4(out_dir: Path) -> pd.DataFrame | None:
    path = out_dir / "table4.csv"
    return pd.read_csv(path) if path.is_file() else None
