"""Tables 1-3 of Koch et al. 2015, each beside the paper's figures: verification by training
pairs (Table 1), 20-way one-shot on Omniglot, on our draws and on Lake's runs (Table 2), and
MNIST 10-versus-1 (Table 3)."""
from __future__ import annotations

import textwrap
from pathlib import Path

import pandas as pd

from fewshot_bench.errors import UserError
from fewshot_bench.records import training_seconds, write_atomic
from fewshot_bench.tables.base import (FAR, IMPROVING_MARK, LEARNING_LEGEND, TABLES, Cell, PlannedRun, Provenance,
                                       Table, alphabet_columns, budget_columns, learning_flag, machine_line, num, p_text,
                                       plus_minus, pyplot, rounded_cell, step_columns, verdict, withhold)

# Table 1: verification accuracy (%) by training pairs, without / with affine distortions x8
TABLE1 = {(30_000, 0): 90.61, (30_000, 8): 91.90, (90_000, 0): 91.54, (90_000, 8): 93.15,
          (150_000, 0): 91.63, (150_000, 8): 93.42}

KOCH_SEEDS = 3  # training seeds of the rows that carry Koch's recipe, whatever --seeds says

# the recipe of Koch's that learns on a CPU: his pairs, distortions, weighted-L1 head and pair loss, with
# what a study on validation alphabets chose to make it learn (our cpu layers with batch norm, Adam, a
# budget); planned once the method file has the preset that cites its finished study (a study's own preset
# in the store is its best trial so far, which a table must not train on while the study runs)
LEARNING_RECIPES = {"conv_siamese": "koch_adam",
                    # the MLP at Koch's own schedule (150k pairs x 9 views an epoch, up to 200 epochs)
                    "mlp_siamese": "koch_schedule_tuned"}
LEARNING_LABEL = "Koch's pairs, head and loss; our layers, batch norm and Adam, chosen on validation"
# the paper's MNIST network's layers (conv_siamese's mnist preset), on the learning recipe for Table 3
MNIST_LAYERS = {"input_size": 35, "channels": "64,128,128", "kernels": "5,3,3", "fc_units": 1024, "padding": "same"}


def learning_recipe(method: str) -> str | None:
    """The preset of the recipe of Koch's that learns on a CPU (``LEARNING_RECIPES``), or None while the
    method file has none: its rows are then left out of the plan."""
    from fewshot_bench.api import METHODS

    name = LEARNING_RECIPES[method]
    return name if name in METHODS.get(method).presets else None

# Table 2: 20-way within-alphabet one-shot accuracy (%) on Omniglot
TABLE2 = {
    "Humans": 95.5,
    "Hierarchical Bayesian Program Learning": 95.2,
    "Affine model": 81.8,
    "Hierarchical Deep": 65.2,
    "Deep Boltzmann Machine": 62.0,
    "Simple Stroke": 35.2,
    "1-Nearest Neighbor": 21.7,
    "Siamese Neural Net (MLP)": 58.3,
    "Convolutional Siamese Net": 92.0,
}
# Which trials each Table 2 figure was measured on. Koch et al. took every figure but their own
# two from Lake, Salakhutdinov & Tenenbaum 2013 (error rates 4.5, 4.8, 18.2, 34.8, 38, 64.8 and
# 78.3%), whose 20-way within-alphabet task is the one Lake's official 20 runs publish
# (`lake_runs`); Koch's siamese networks were scored on 400 trials of their own, drawn from the
# same 10 evaluation alphabets and 4 drawers, as `omniglot20` draws them.
TABLE2_TRIALS = {system: "lake_runs" for system in TABLE2}
TABLE2_TRIALS.update({"Siamese Neural Net (MLP)": "omniglot20", "Convolutional Siamese Net": "omniglot20"})

# Table 3: MNIST 10-versus-1 one-shot accuracy (%)
TABLE3 = {"1-Nearest Neighbor": 26.5, "Convolutional Siamese Net": 70.3}

# our methods that reproduce a published row of Tables 2 and 3
PAPER_ROW = {
    "pixel_1nn": "1-Nearest Neighbor",
    "affine": "Affine model",
    "mlp_siamese": "Siamese Neural Net (MLP)",
    "conv_siamese": "Convolutional Siamese Net",
}


# one colour per source of trials in every figure of Koch's tables
SOURCE_COLOURS = {"ours": "#4c72b0", "lake_runs": "#dd8452"}
SOURCE_LABELS = {"ours": "ours on {} (our draws)", "lake_runs": "ours on lake_runs (Lake's 20 runs)"}


def check_preset(preset: str) -> None:
    if preset not in ("cpu", "paper"):
        raise UserError(f"--preset must be cpu or paper, got {preset!r}")


KOCH_SGD_PREFIX = "Koch's SGD and layers: "  # Table 1's rows of Koch's exact recipe, beside the learning recipe's


def table1_row(pairs: int, distortions: int, prefix: str = "") -> str:
    """A Table 1 cell's row label (``prefix``: which recipe, where the table holds two)."""
    return f"{prefix}{pairs // 1000}k pairs, distortions x{distortions}"


def claim_text(step: dict, protocol: str) -> str:
    """A paired step (``base.step_columns``) in words: the difference, its interval, the test and
    whether it holds (positive, the interval clear of zero and p < 0.05)."""
    mean, half, p = step[f"{protocol}_step"], step[f"{protocol}_step_ci95"], step[f"{protocol}_p"]
    seeds = step[f"{protocol}_paired_seeds"]
    interval = f" ± {half:.2f}" if half == half else ""  # NaN with one seed: no interval
    holds = mean > 0 and (half != half or mean - half > 0) and p < 0.05
    return (f"{mean:+.2f} points{interval} over {seeds} paired seed{'s' if seeds > 1 else ''}, McNemar "
            f"{p_text(p)}: {'holds' if holds else 'not shown'}")


def improving(row) -> bool:
    return verdict(row.get("still_improving")) is True


class KochTable(Table):
    """A table of Koch 2015: one row per system, our accuracy on each protocol beside the paper's."""

    published: dict = {}  # system -> the paper's figure
    paper_trials: dict = {}  # system -> the protocol its figure was measured on (default: the first)

    def summarise(self, runs: list[PlannedRun], records: list[dict]) -> pd.DataFrame:
        """One row per system: for the table's first protocol ``ours``/``ci95`` (mean ± CI), for each
        further protocol P the columns ``P``/``P_ci95``; ``paper`` and ``paper_trials`` (the protocol
        the paper's figure was measured on) and ``diff_vs_paper`` on those trials."""
        protocols = list(dict.fromkeys(run.protocol for run in runs))
        rows = {}
        for run in runs:
            rows.setdefault(run.cell.row, (run.cell, {}))[1].setdefault(run.protocol, []).append(run.record)
        out = []
        for row, (cell, by_protocol) in rows.items():
            if any(r is None for found in by_protocol.values() for r in found):
                continue  # not (yet) stored: a table written from the stored runs alone leaves the row out
            entry = {"system": row, "method": cell.method, "preset": cell.preset or "-"}
            for i, protocol in enumerate(protocols):
                mean, half, over = rounded_cell(by_protocol[protocol])
                name = "ours" if i == 0 else protocol
                entry.update({name: mean, f"{'ci95' if i == 0 else protocol + '_ci95'}": half})
                if i == 0:
                    entry["ci_over"] = over
                    entry.update(alphabet_columns(by_protocol[protocol]))
            if "lake_runs" in protocols:
                entry["lake_runs_minus_ours"] = round(entry["lake_runs"] - entry["ours"], 2)
            fits = by_protocol[protocols[0]]
            entry.update(budget_columns(fits))
            entry.update({"seeds": len(fits),
                          "train_s": round(sum(training_seconds(r, records) for r in fits) / len(fits), 1),
                          "paper": cell.paper, "paper_trials": None, "diff_vs_paper": None, "source": "our runs"})
            if cell.paper is not None:
                entry["paper_trials"] = self.paper_trials.get(cell.row, protocols[0])  # named as in the paper
                measured = entry["ours"] if entry["paper_trials"] == protocols[0] else entry[entry["paper_trials"]]
                entry["diff_vs_paper"] = round(measured - cell.paper, 2)
            entry["learning"] = learning_flag(fits)
            if entry["learning"]:  # never the method's figure: the flag stands where the accuracy would
                entry = withhold(entry, ["ours", "ci95", "ci95_alphabets", "diff_vs_paper", "lake_runs_minus_ours",
                                         *[c for p in protocols[1:] for c in (p, f"{p}_ci95")]])
            out.append(entry)
        ours = {c.paper for c, _ in rows.values()}
        for system, figure in self.published.items():
            if figure not in ours:
                out.append({"system": f"{system} (published only, not run here)", "method": "", "preset": "",
                            "seeds": 0, "paper": figure, "paper_trials": self.paper_trials.get(system, protocols[0]),
                            "source": "published"})
        # every column present even where no row has it yet (a table written from a partial store)
        columns = ["system", "method", "preset", "ours", "ci95", "ci_over", "seeds", "train_s", "paper", "paper_trials",
                   "diff_vs_paper", "source", "learning", "accuracy_not_learned"] + \
                  [c for p in protocols[1:] for c in (p, f"{p}_ci95")] + \
                  (["lake_runs_minus_ours"] if "lake_runs" in protocols else [])
        frame = pd.DataFrame(out)
        return frame.reindex(columns=list(frame.columns) + [c for c in columns if c not in frame.columns])

    def write(self, frame, runs, records, out_dir: Path, about: Provenance) -> None:
        out_dir.mkdir(parents=True, exist_ok=True)
        frame.to_csv(out_dir / f"{self.name}.csv", index=False)
        first = runs[0].protocol
        # training counted once per fitted method (the other protocols reuse its weights)
        compute = sum((training_seconds(r.record, records) if r.protocol == first else 0) + r.record["eval_seconds"]
                      for r in runs if r.record is not None)
        two = "lake_runs" in frame.columns
        lines = [f"# {self.name}: ours beside Koch et al. 2015", "",
                 f"- command: `{about.command}`",
                 f"- preset: {about.preset}; training seeds: {about.seeds} (the rows of Koch's recipe: {KOCH_SEEDS}, "
                 "whatever --seeds says; the seeds column counts each row's)",
                 machine_line(runs),
                 f"- time: {compute:.0f} s of training and evaluation in the runs below (as recorded; a reused "
                 "checkpoint counts its original training, once per method); "
                 f"this reproduce took {about.seconds:.0f} s (stored runs are reused)",
                 *about.missing_line(len(runs)),
                 "- cells: mean ± 95% CI, a t-interval over "
                 f"{' / '.join(sorted(u for u in frame.get('ci_over', pd.Series(dtype=object)).dropna().unique() if u))}"
                 " (one seed: the units of all its trial draws; several: the seeds)"]
        if two:
            lines.append("- columns: `omniglot20` = our 10 draws of 400 trials (trial seeds 0-9); `lake_runs` = Lake's "
                         "20 official runs (400 trials, CI over the 20 runs), scored with the same fitted weights; "
                         "gap = lake_runs - omniglot20")
        lines.append(f"- Δ paper: ours minus the paper's figure, on the trials that figure was measured on; "
                     f"† = more than {FAR:.0f} points away (explained in results/README.md)")
        lines.append(f"- TFLOP: the training's forward and backward compute (steps and images in the CSV); "
                     f"{IMPROVING_MARK} (hollow dots in the figure)")
        if frame.get("learning", pd.Series(dtype=object)).map(lambda v: isinstance(v, str)).any():
            lines.append(f"- {LEARNING_LEGEND}")
        alphabets = "ci95_alphabets" in frame.columns
        if alphabets:
            lines.append("- ± alphabets: the 95% interval over the 10 test alphabets, what an accuracy says about new "
                         "alphabets (the task has only these 10); the ± beside the accuracy is over trial sets, how "
                         "precisely the method is measured on these alphabets, the interval to compare methods by "
                         "(better still, `bench compare`'s paired test)")
        header = ["system", "omniglot20 (%)" if two else "ours (%)"] + (["± alphabets"] if alphabets else []) + \
                 (["lake_runs (%)", "gap"] if two else []) + \
                 ["paper (%)", "paper's trials", "Δ paper", "seeds", "train s", "TFLOP"]
        lines += ["", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        for _, r in frame.iterrows():
            flag = r.get("learning") if isinstance(r.get("learning"), str) else None
            cells = [r["system"], flag or plus_minus(r, "ours", "ci95")]
            if alphabets:
                cells.append(num(r.get("ci95_alphabets"), ".1f"))
            if two:
                cells += [flag or plus_minus(r, "lake_runs", "lake_runs_ci95"), num(r.get("lake_runs_minus_ours"), "+.1f")]
            diff = r.get("diff_vs_paper")
            far = "" if pd.isna(diff) or abs(diff) <= FAR else " †"
            cells += [num(r["paper"], ".1f"), r["paper_trials"] if isinstance(r["paper_trials"], str) else "",
                      num(diff, "+.1f") + far, str(r["seeds"] or ""), num(r.get("train_s"), ".0f"),
                      num(r.get("gflop", float("nan")) / 1000, ".1f") + (" ↑" if improving(r) else "")]
            lines.append("| " + " | ".join(cells) + " |")
        lines += self.notes(frame, runs)
        write_atomic(out_dir / f"{self.name}.md", "\n".join(lines) + "\n")
        self.plot(frame, out_dir / f"{self.name}.png")

    def notes(self, frame: pd.DataFrame, runs: list[PlannedRun]) -> list[str]:
        """What the reader needs to compare the cells with the paper's: which trials, how hard."""
        return []

    def plot(self, frame: pd.DataFrame, path: Path) -> bool:
        """A dot plot: our accuracy per protocol (95% CI), the paper's figure as a black diamond on the
        row of the trials it was measured on; published-only rows as a diamond alone; the axis zoomed
        to the figures shown (dots, not bars, so a zoomed axis does not mislead). Drawn twice: ``path``
        for a page, and ``NAME-narrow.png`` (row labels wrapped, larger type) for a phone's width.
        Needs matplotlib."""
        return self._plot(frame, path) and self._plot(frame, path.with_name(f"{path.stem}-narrow.png"), narrow=True)

    def _plot(self, frame: pd.DataFrame, path: Path, narrow: bool = False) -> bool:
        plt = pyplot()
        if plt is None:
            return False
        protocols = [("ours", "ci95")] + ([("lake_runs", "lake_runs_ci95")] if "lake_runs" in frame else [])
        first = "omniglot20" if "lake_runs" in frame else self.plan("cpu")[0][0]
        names = {"ours": first, "lake_runs": "lake_runs"}
        height = 0.5 / len(protocols)
        size = (5.2, max(4.0, 1.8 + 0.3 * len(protocols) * len(frame))) if narrow else \
            (10, max(2.6, 1.3 + 0.32 * len(protocols) * len(frame)))
        fig, ax = plt.subplots(figsize=size)
        values = []
        for i, (column, ci) in enumerate(protocols):
            offset = (len(protocols) - 1) / 2 * height - i * height
            ours = frame[column] if column in frame else pd.Series(dtype=float)
            ax.errorbar(ours, [k + offset for k in range(len(frame))], xerr=frame.get(ci), fmt="o", markersize=5,
                        capsize=2, color=SOURCE_COLOURS[column], label=SOURCE_LABELS[column].format(first))
            rising = [k for k, row in enumerate(frame.to_dict("records")) if improving(row)]
            if rising:  # still improving at the end of training: hollow
                ax.plot(ours.iloc[rising], [k + offset for k in rising], "o", markersize=3.5, color="white",
                        linestyle="none")
            values += list(ours.dropna() - frame[ci].fillna(0)[ours.notna()])
        legend = "Koch 2015, on the trials it was measured on"
        for k, row in enumerate(frame.to_dict("records")):
            if pd.isna(row["paper"]):
                continue
            trials = row.get("paper_trials") if isinstance(row.get("paper_trials"), str) else first
            column = next((c for c, _ in protocols if names[c] == trials), "ours")
            offset = (len(protocols) - 1) / 2 * height - [c for c, _ in protocols].index(column) * height
            ax.plot(row["paper"], k + offset, marker="D", color="black", markersize=5, linestyle="none", label=legend)
            legend = None  # once
            values.append(row["paper"])
        labels = [f"{row['system']}\n({row['learning']})" if isinstance(row.get("learning"), str) else row["system"]
                  for row in frame.to_dict("records")]
        # wrapped onto short lines (a phone's width: shorter still), so a long name leaves the plot its room
        labels = ["\n".join(textwrap.wrap(label.replace("\n", " "), 24 if narrow else 56)) for label in labels]
        ax.set_yticks(range(len(frame)), labels, fontsize=7 if narrow else 8)
        ax.set_ylim(len(frame) - 0.5, -0.5)
        ax.grid(axis="x", alpha=0.3)
        low = max(0.0, 5 * (min(values) // 5) - 5) if values else 0.0
        ax.set_xlim(low, 100)
        ax.set_xlabel("accuracy (%)")
        title = f"{self.name}: {self.summary}"
        ax.set_title("\n".join(textwrap.wrap(title, 48 if narrow else 80)), fontsize=10)
        fig.legend(*ax.get_legend_handles_labels(), loc="lower center", ncol=1 if narrow else 3, fontsize=8,
                   frameon=False)
        fig.tight_layout(rect=(0, (1.0 if narrow else 0.4) / fig.get_figheight(), 1, 1))  # room for the legend
        fig.savefig(path, dpi=110)
        plt.close(fig)
        return True


@TABLES.register("table1")
class Table1(KochTable):
    summary = "verification accuracy by training pairs and distortions (Koch 2015, Table 1)"

    def plan(self, preset, stored=None):
        check_preset(preset)
        # Koch's recipe as tuned on validation (koch_tuned; paper: the 105x105 network, each epoch a pass
        # over all pairs and copies, up to 1.35M views), each cell trained until validation stops
        # improving under the preset's compute cap, over KOCH_SEEDS training seeds: the same compute
        # for every pool of pairs and distortions
        base = "koch_tuned" if preset == "cpu" else "paper"
        learning = learning_recipe("conv_siamese") if preset == "cpu" else None
        # the recipe of Koch's that learns on a CPU first (its rows the table's figures), then his exact
        # recipe, which the learning check marks where it did not learn
        families = ([("", learning)] if learning else []) + [(KOCH_SGD_PREFIX if learning else "", base)]
        cells = [Cell(table1_row(pairs, d, prefix), "conv_siamese", name, {"pairs": pairs, "distortions": d},
                      paper=figure, seeds=KOCH_SEEDS)
                 for prefix, name in families for (pairs, d), figure in TABLE1.items()]
        return ("verification",), cells

    def notes(self, frame, runs):
        """The paper's two claims as paired tests on identical verification trials, seeds paired:
        distortions beat none at each pool size, and 150k pairs beat 30k."""
        claims = [((p, 0), (p, 8), f"distortions x8 against none at {p // 1000}k pairs")
                  for p in sorted({p for p, _ in TABLE1})]
        claims += [((30_000, d), (150_000, d), f"150k pairs against 30k, distortions x{d}") for d in (0, 8)]
        lines = []
        flagged = {} if frame is None else dict(zip(frame["system"], frame.get("learning", [None] * len(frame))))
        rows = {run.cell.row for run in runs}
        for prefix in [p for p in ("", KOCH_SGD_PREFIX) if table1_row(30_000, 0, p) in rows]:
            for before, after, claim in claims:
                pair = (table1_row(*before, prefix), table1_row(*after, prefix))
                stuck = [row for row in pair if isinstance(flagged.get(row), str)]
                if stuck:  # a claim about learning cannot be tested on a network that did not learn
                    lines.append(f"- {prefix}{claim}: not tested, {' and '.join(stuck)} {flagged[stuck[0]]}")
                    continue
                step = step_columns(runs, *pair, "verification")
                if step:
                    paper = TABLE1[after] - TABLE1[before]
                    lines.append(f"- {prefix}{claim}: {claim_text(step, 'verification')} (the paper: {paper:+.2f})")
        return ["", "## The paper's claims, paired", "",
                "Each claim compares two cells on identical verification trials, training seed k against seed k: "
                "the mean difference with its t-interval over the paired seeds, and McNemar's exact p over all "
                "paired trials.", "", *lines] if lines else []


@TABLES.register("table2")
class Table2(KochTable):
    summary = "20-way one-shot Omniglot, our draws and Lake's runs (Koch 2015, Table 2)"
    published = TABLE2
    paper_trials = TABLE2_TRIALS
    store_figures = ("Table 2 (Koch 2015)", ("omniglot20", "lake_runs"), TABLE2, PAPER_ROW)

    def plan(self, preset, stored=None):
        check_preset(preset)
        # our draws (omniglot20) beside Lake's runs, the trials of the paper's baselines
        # the rows named after Koch's twins are his recipe (same/different pairs, layer-wise SGD, per-layer
        # L2, drawers 1-12, distortions x8, early stopping), with the settings `bench tune` chose on
        # validation (koch_tuned), over KOCH_SEEDS training seeds; our own recipes keep rows of their own
        koch = "koch_tuned" if preset == "cpu" else "paper"
        conv, mlp = ((learning_recipe("conv_siamese"), learning_recipe("mlp_siamese")) if preset == "cpu"
                     else (None, None))
        mlp_row, conv_row = "Siamese Neural Net (MLP)", "Convolutional Siamese Net"
        cells = [Cell("1-Nearest Neighbor", "pixel_1nn", learns=False, paper=TABLE2["1-Nearest Neighbor"]),
                 Cell("Affine model", "affine", learns=False, paper=TABLE2["Affine model"]),
                 # the MLP at Koch's own schedule, where its study has chosen its units and SGD values
                 *([Cell(f"{mlp_row}, at Koch's schedule (its units and SGD values chosen on validation)",
                         "mlp_siamese", mlp, paper=TABLE2[mlp_row], seeds=KOCH_SEEDS)] if mlp else []),
                 Cell(mlp_row + (", Koch's recipe at a CPU budget" if mlp else ""), "mlp_siamese", "koch_tuned",
                      paper=TABLE2[mlp_row], seeds=KOCH_SEEDS),
                 # the recipe of Koch's that learns on a CPU, and the same networks scored two other ways
                 *([Cell(f"{conv_row} ({LEARNING_LABEL})", "conv_siamese", conv, paper=TABLE2[conv_row],
                         seeds=KOCH_SEEDS),
                    Cell(f"{conv_row}, its embeddings by plain L1 (the head checked; beyond the table)",
                         "conv_siamese", conv, {"score_with": "l1"}, seeds=KOCH_SEEDS),
                    Cell(f"{conv_row}, every pair of a batch (a change of sampling; beyond the table)",
                         "conv_siamese", conv, {"objective": "pair_grid"}, seeds=KOCH_SEEDS)] if conv else []),
                 Cell(conv_row + (", Koch's SGD and layers at a CPU budget" if conv else ""), "conv_siamese", koch,
                      paper=TABLE2[conv_row], seeds=KOCH_SEEDS),
                 # the conv twin on our one-shot trial recipe (two networks, rotated alphabets, 8 test-time
                 # views), and both twins on the pair loss with Adam: every twin under every recipe
                 *([Cell("Convolutional siamese, our cpu trial recipe (beyond the table)", "conv_siamese", "cpu"),
                    Cell("Convolutional siamese, pairs with Adam (beyond the table)", "conv_siamese", "cpu_pairs")]
                   if preset == "cpu" else []),
                 Cell("Siamese MLP, our cpu trial recipe (beyond the table)", "mlp_siamese", "cpu"),
                 Cell("Siamese MLP, pairs with Adam (beyond the table)", "mlp_siamese", "cpu_pairs"),
                 Cell("Modified Hausdorff distance (beyond the table)", "mhd", learns=False),
                 Cell("Prototype loss on the cpu twin (beyond the paper; not Snell's recipe)", "protonet", "twin"),
                 Cell("Contrastive siamese (beyond the paper)", "contrastive_siamese", "cpu"),
                 Cell("Tree metric on that twin (beyond the paper)", "tree_metric", "cpu")]
        return ("omniglot20", "lake_runs"), cells

    def notes(self, frame, runs):
        if "lake_runs" not in frame.columns:
            return []
        ours = frame[(frame["source"] == "our runs") & frame["lake_runs_minus_ours"].notna()]
        gaps = ", ".join(f"{m}{'' if p == '-' else f' ({p})'} {g:+.1f}"
                         for m, p, g in zip(ours["method"], ours["preset"], ours["lake_runs_minus_ours"]))
        far = ours[ours["diff_vs_paper"].abs() > FAR]
        return ["", "## Notes", "",
                "- Which trials: every figure of the paper's Table 2 but Koch's own two comes from Lake, "
                "Salakhutdinov & Tenenbaum 2013, measured on their 20-way within-alphabet task, the task Lake's 20 "
                "official runs publish: compare those with the `lake_runs` column. Koch's siamese networks (MLP "
                "58.3, conv 92.0) were scored on 400 trials of their own from the same 10 alphabets, which Koch "
                "did not publish: compare those with `omniglot20`, our draws of such trials.",
                "- The two kinds of trials differ: Lake's 20 runs are one fixed draw of 400 trials, queries and "
                "support from drawers 1-8 and the same 20 characters in both runs of an alphabet; `omniglot20` "
                "draws 20 characters per trial set afresh and two drawers from 17-20, ten draws of 400 trials.",
                f"- Difficulty gap, lake_runs minus omniglot20 with the same weights (points): {gaps}; "
                f"mean {ours['lake_runs_minus_ours'].mean():+.1f}.",
                f"- Cells more than {FAR:.0f} points from the paper on the paper's own trials: "
                + (", ".join(f"{s} ({d:+.1f})" for s, d in zip(far["system"], far["diff_vs_paper"])) or "none")
                + "; see results/README.md for what was measured about each."]


@TABLES.register("table3")
class Table3(KochTable):
    summary = "MNIST 10-versus-1 one-shot (Koch 2015, Table 3)"
    published = TABLE3
    store_figures = ("Table 3 (Koch 2015)", ("mnist10",), TABLE3, PAPER_ROW)

    def plan(self, preset, stored=None):
        check_preset(preset)
        conv = learning_recipe("conv_siamese") if preset == "cpu" else None
        return ("mnist10",), [
            Cell("1-Nearest Neighbor", "pixel_1nn", learns=False, paper=TABLE3["1-Nearest Neighbor"]),
            # the paper's MNIST network (35x35 inputs) on the recipe of Koch's that learns, then on his exact
            # recipe; both trained on Omniglot's background
            *([Cell("Convolutional Siamese Net, the paper's MNIST network "
                    f"({LEARNING_LABEL.replace('our layers, ', '')})", "conv_siamese", conv, MNIST_LAYERS,
                    paper=TABLE3["Convolutional Siamese Net"], seeds=KOCH_SEEDS)] if conv else []),
            # Table 2's network of that recipe (28x28, our layers), scored on MNIST as it is: its runs reuse Table 2's
            *([Cell("Convolutional siamese, Table 2's network of that recipe, 28x28 (beyond the table)", "conv_siamese",
                    conv, seeds=KOCH_SEEDS)] if conv else []),
            Cell("Convolutional Siamese Net" + (", Koch's SGD at a CPU budget" if conv else ""), "conv_siamese",
                 "koch_mnist" if preset == "cpu" else "mnist", paper=TABLE3["Convolutional Siamese Net"], seeds=KOCH_SEEDS),
            *([Cell("Convolutional siamese, our cpu trial recipe at 35x35 (beyond the table)", "conv_siamese",
                    "cpu35")] if preset == "cpu" else [])]
