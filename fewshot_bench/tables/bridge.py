"""The bridge (beyond the paper): from our cpu recipe to Koch's own recipe, one change at a time.

Two conv siamese networks stand in Table 2: our cpu recipe (the one-shot trial loss, two networks,
8 test-time views, Adam, all 20 drawers, rotated alphabets) near the paper's 92%, and Koch's pair
recipe far under it. The chain below walks from one to the other; each link changes one thing of
the link before (the options it names, taken from the far end's config, so the last link is Koch's
recipe exactly), then the input grows at equal training compute. Every link is trained with
``SEEDS`` seeds and scored on Koch's task (our 10 draws), Lake's runs and verification; a step's
worth is the paired difference to the link before (seed k against seed k, identical trials), with
its t-interval over seeds and an exact McNemar p on the pooled trials.

The far end is Koch's recipe as ``bench tune`` chose it on validation: the method's ``koch_tuned``
preset, else the tuned preset of the study ``conv_siamese-koch_cpu-omniglot20`` in the store. The
pair loss's Adam rate is chosen on validation too: the cpu rate times 1/3, 1 and 3 (more factors of
3 while the best lies at the grid's edge), each trained once (seed 0) and scored by its best epoch
on the 320 validation trials of Koch's validation alphabets.

Changes interact: a link measured after the pair loss and Koch's SGD have brought accuracy down may
show nothing that it would be worth at the top. The changes the chain makes after that point whose
worth at the top matters (Koch's layers, his 12 drawers, no rotated alphabets) are measured the other
way too, as detours: each alone from the last link before the pair loss, on Koch's task and Lake's
runs; the table sets each detour's step beside the same change's step in the chain.
"""
from __future__ import annotations

import dataclasses
import functools
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from fewshot_bench.api import METHODS
from fewshot_bench.errors import UserError
from fewshot_bench.presets import find_preset, preset_about
from fewshot_bench.records import did_not_learn, write_atomic
from fewshot_bench.seeding import format_seeds
from fewshot_bench.stats import t_interval
from fewshot_bench.tables.base import (IMPROVING_MARK, TABLES, Cell, PlannedRun, Provenance, Table, accuracy_by_seed,
                                       budget_columns, compute_line, machine_line, p_text, pyplot, rounded_cell,
                                       step_columns, verdict)

METHOD = "conv_siamese"
PROTOCOLS = ("omniglot20", "lake_runs", "verification")  # names, or (name, options) pairs; the first fits
SEEDS = 3
# (start preset, far-end presets in the order they are looked for) per preset family
ENDS = {"cpu": ("cpu", ("koch_tuned", "conv_siamese-koch_cpu-omniglot20")), "tiny": ("tiny", ("tiny_koch",))}
# Koch's end beside the recipe of his that learns on a CPU (Tables 1-3's rows): his pairs, distortions,
# weighted-L1 head and pair loss, with our layers, batch norm and Adam (the method file's preset, chosen
# by a study on validation); its step is from Koch's tuned recipe at the start's input size
LEARNING_ENDS = {"cpu": "koch_adam"}
LEARNING_ROW = "Koch's tuned recipe → the recipe of his that learns ({preset})"
LR_FACTORS = (1 / 3, 1.0, 3.0)  # times the start's Adam rate, for the pair loss
# accuracy against compute: both ends trained to CURVE_GFLOP over CURVE_EPOCHS epochs (no early
# stopping, a constant rate for our end: a cosine would anneal at every length differently) and read
# after the epochs of FRACTIONS, on Koch's task and verification
CURVE_GFLOP = 240_000.0  # 4x koch_cpu's cap: about 1.5 hours of a 28x28 twin on 2 AVX2 cores in fp32
CURVE_EPOCHS = 8
FRACTIONS = {1: "1/8", 2: "1/4", 4: "1/2", 8: "1"}
CURVE_PROTOCOLS = ("omniglot20", "verification")
TARGETS = {"omniglot20": 92.0, "verification": 93.42}  # Koch's Table 2 conv row and his best Table 1 cell
ASYMPTOTE_BOUND = 100.0  # a trend's asymptote: accuracy cannot pass 100%
# Koch's schedule for those figures: 150k pairs, each with 8 affine distortions beside it (1.35M pair
# views an epoch), up to 200 epochs (early stopping picked the epoch; the paper does not say which)
PAPER_PAIR_VIEWS, PAPER_EPOCHS = 150_000 * 9, 200
EXTEND = 2  # more factors of 3 beyond the grid while its best rate lies at its edge
# a trend is read no further than this many times the largest compute measured; past it, it says BEYOND
EXTRAPOLATION = 10.0
BEYOND = "beyond the measured range"


@dataclass(frozen=True)
class Link:
    """One step of the chain: ``keys`` take the far end's values, ``values`` are set outright (a
    callable value: computed from the config before the link). ``drops``: options the link's new
    objective never reads, which it therefore changes too (its label names them): a later link that
    changes only those changes nothing, and the chain folds it into this one."""

    label: str
    keys: tuple = ()
    values: dict = field(default_factory=dict)
    drops: tuple = ()

    def apply(self, config: dict, end: dict) -> dict:
        values = {k: v(config) if callable(v) else v for k, v in self.values.items()}
        return {**config, **{k: end[k] for k in self.keys}, **values}


def pair_steps(config: dict) -> int:
    """The batches an epoch of a pair training of ``config`` (a conv_siamese config as a dict)."""
    return METHODS.get("conv_siamese").Config(**config).pair_epoch_steps


PAIR_LINK = "trial loss → pair loss, and with it no rotated alphabets (Adam at its val-chosen rate)"
LINKS = (
    Link("8 test-time views → 1", ("test_symmetries",)),
    Link("two networks → one", ("members",)),
    # Koch's pairs never turn or mirror an alphabet: the pair loss drops the rotated alphabets too
    Link(PAIR_LINK, ("objective", "pairs", "batch_size", "pair_steps", "loss", "margin", "keep",
                     "way", "alphabets_per_batch", "drawers_per_character"), drops=("rotations", "reflections")),
    Link("Adam, cosine → Koch's layer-wise SGD (tuned)", ("optimizer", "lr", "momentum", "l2", "momentum_start",
                                                         "momentum_ramp_epochs", "lr_decay", "adam_lr", "schedule",
                                                         "weight_decay")),
    Link("20 drawers → 12", ("train_drawers",)),
    Link("rotated alphabets → none", ("rotations", "reflections")),
    Link("our layers → Koch's (tuned)", ("network", "metric", "channels", "kernels", "strides", "padding",
                                          "batch_norm", "pool_last", "hidden", "fc_units", "init")),
    # at the steps an epoch before it: more distorted copies, not more training (the schedule's link
    # changes the compute)
    Link("one distortion of each pair → 8 (equal steps)", ("distortions",), values={"pair_steps": pair_steps}),
    Link("our schedule → Koch's (early stopping, compute cap)", ("epochs", "patience", "steps_per_epoch",
                                                                  "budget_gflop", "snapshots", "halve_every",
                                                                  "pair_steps")),
    Link("input → 35 (equal compute)", values={"input_size": 35}),
    Link("input → 52 (equal compute)", values={"input_size": 52}),
)


# (link, the chain row it is measured from) for each detour; its protocols share one training
DETOURS = (("our layers → Koch's (tuned)", "two networks → one"), ("20 drawers → 12", "two networks → one"),
           ("rotated alphabets → none", "two networks → one"))
DETOUR_PROTOCOLS = ("omniglot20", "lake_runs")


def config_of(preset: str) -> dict:
    return dataclasses.asdict(METHODS.get(METHOD).make_config(preset))


def far_end(family: str) -> str:
    """The preset the chain ends at: the first of the family's that exists."""
    for name in ENDS[family][1]:
        if name in METHODS.get(METHOD).presets or find_preset(METHOD, name) is not None:
            return name
    raise UserError("the bridge ends at Koch's recipe as bench tune chose it, and no tuned preset is there yet: run "
                    "`bench tune --method conv_siamese --preset koch_cpu --protocol omniglot20 --trials 40` "
                    "(it writes conv_siamese-koch_cpu-omniglot20 into the store) and try again")


def chain(family: str) -> list[tuple[str, dict]]:
    """(label, config) from the start preset through every link; each link's config differs from the
    one before in its own options only, and the last of the named links is the far end's config."""
    start, end = config_of(ENDS[family][0]), config_of(far_end(family))
    named = {k for link in LINKS for k in link.keys}
    unnamed = sorted(k for k in start if start[k] != end[k] and k not in named and k != "input_size")
    if unnamed:  # a difference no link makes would hide inside another link's step
        raise UserError(f"the bridge's links change no option {', '.join(unnamed)}, where the two ends differ")
    steps, config, dropped = [("our cpu recipe", dict(start))], dict(start), set()
    for link in LINKS:
        label = link.label.replace("input →", f"input {config['input_size']} →")  # the size it grows from
        before, config = config, link.apply(config, end)
        changed = {k for k in config if config[k] != before[k]}
        read = changed - set(ignored_by(config))
        if not changed or (not read and not changed <= dropped):
            raise UserError(f"the bridge's link {link.label!r} changes nothing its training reads "
                            f"({', '.join(sorted(changed)) or 'no option'}): drop it, or name what it changes")
        dropped |= set(link.drops)
        if not read:  # only what an earlier link's objective already dropped: that link names it, this one goes
            continue
        steps.append((label, dict(config)))
    return steps


def ignored_by(config: dict) -> tuple:
    """The options a config's objective never reads (``Objective.ignores``)."""
    return METHODS.get(METHOD).ignored_options(config["objective"])


def detour_row(link: str, base: str) -> str:
    return f"{link}, from {base}"


def detours(family: str, steps: list[tuple[str, dict]]) -> list[tuple[str, str, str, dict]]:
    """(row, link, base, config) of each detour: the base link's config with the link's change alone."""
    end, by_label = config_of(far_end(family)), {link.label: link for link in LINKS}
    rows = dict(steps)
    out = []
    for label, base in DETOURS:
        link = by_label[label]
        config = link.apply(rows[base], end)
        out.append((detour_row(label, base), label, base, config))
    return out


def learning_end(family: str) -> tuple[str, str] | None:
    """(row, preset) of the recipe of Koch's that learns, set beside the far end; None where the family has none."""
    preset = LEARNING_ENDS.get(family)
    return None if preset is None else (LEARNING_ROW.format(preset=preset), preset)


def koch_row(steps: list[tuple[str, dict]]) -> str:
    """The chain's row of Koch's tuned recipe: the last link at the start's input size (the input links follow)."""
    size = steps[0][1]["input_size"]
    return [label for label, config in steps if config["input_size"] == size][-1]


def is_learning_cell(cell: Cell) -> bool:
    return cell.row in {LEARNING_ROW.format(preset=preset) for preset in LEARNING_ENDS.values()}


def is_detour_cell(cell: Cell) -> bool:
    return cell.row in {detour_row(label, base) for label, base in DETOURS}


def options_from(start: dict, config: dict) -> dict:
    """A link's options: what it and the links before it changed of the start preset (a tuple as the
    command line writes it, ``1,2,3``: runs take options as text)."""
    return {k: ",".join(map(str, v)) if isinstance(v, (tuple, list)) else v
            for k, v in config.items() if k not in start or start[k] != v}


def rate_cells(family: str, config: dict, start: dict, stored=None) -> tuple[list[Cell], float | None]:
    """The pair link at the start's Adam rate times each factor (one seed, Koch's task), and the
    chosen rate once all are stored; the grid grows by a factor of 3 at the edge its best lies on."""
    base, factors = start["adam_lr"], list(LR_FACTORS)
    first, options = protocol_of(PROTOCOLS[0])
    while True:
        cells = [Cell(f"{PAIR_LINK}, rate {base * f:.3g}", METHOD, ENDS[family][0],
                      {**options_from(start, config), "adam_lr": float(f"{base * f:.3g}")},
                      protocols=(PROTOCOLS[0],), seeds=1) for f in factors]
        scores = [None if stored is None else stored(c, first, options, 0) for c in cells]
        if any(r is None for r in scores):
            return cells, None
        rate = chosen_rate([(c.options["adam_lr"], r["training"]["best_validation"]) for c, r in zip(cells, scores)])
        best = [c.options["adam_lr"] for c in cells].index(rate)
        if best == len(factors) - 1 and factors[-1] < LR_FACTORS[-1] * 3 ** EXTEND:
            factors.append(factors[-1] * 3)
        elif best == 0 and factors[0] > LR_FACTORS[0] / 3 ** EXTEND:
            factors.insert(0, factors[0] / 3)
        else:
            return cells, rate


def chosen_rate(scored: list[tuple[float, float]]) -> float:
    """The (rate, validation accuracy) pair's rate with the best accuracy; a tie goes to the smaller rate."""
    return max(scored, key=lambda d: (d[1], -d[0]))[0]


def with_rate(steps: list[tuple[str, dict]], rate: float | None) -> list[tuple[str, dict]]:
    """The chain with the pair link at its chosen Adam rate (the links after it set their own)."""
    return [(label, {**config, "adam_lr": rate} if label == PAIR_LINK and rate is not None else config)
            for label, config in steps]


def protocol_of(entry) -> tuple[str, dict]:
    return (entry, {}) if isinstance(entry, str) else (entry[0], dict(entry[1]))


def names() -> list[str]:
    return [protocol_of(p)[0] for p in PROTOCOLS]


def is_rate_cell(cell: Cell) -> bool:
    return cell.row.startswith(f"{PAIR_LINK}, rate")


CURVE_ROWS = ("our cpu recipe (compute curve)", "Koch's tuned recipe (compute curve)")


def curve_cells(family: str, steps: list[tuple[str, dict]]) -> list[Cell]:
    """Both ends at ``CURVE_GFLOP`` over ``CURVE_EPOCHS`` epochs, one cell a snapshot (the full budget's
    first: its run trains, the others read its snapshots)."""
    start, koch = steps[0][1], config_of(far_end(family))
    ends = ((CURVE_ROWS[0], {**start, "schedule": "constant"}), (CURVE_ROWS[1], koch))
    cells = []
    for epoch in sorted(FRACTIONS, reverse=True):
        for row, config in ends:
            budget = {"budget_gflop": CURVE_GFLOP if family == "cpu" else config["budget_gflop"],
                      "epochs": CURVE_EPOCHS, "patience": CURVE_EPOCHS, "snapshots": tuple(FRACTIONS),
                      "keep": f"epoch{epoch}"}
            cells.append(Cell(row, METHOD, ENDS[family][0], options_from(start, {**config, **budget}),
                              protocols=CURVE_PROTOCOLS, seeds=SEEDS))
    return cells


def is_curve_cell(cell: Cell) -> bool:
    return cell.row in CURVE_ROWS


def saturating(gflop, a, b, c):
    """The trend fitted to accuracy against compute: a - b * (GFLOP / 1000) ** -c, rising to ``a``."""
    return a - b * np.power(np.asarray(gflop, dtype=float) / 1000.0, -c)


def fit_trend(points: list[tuple[int, float, float]], targets: tuple[float, ...], at: float | None = None) -> dict | None:
    """The saturating power law fitted (scipy's curve_fit) to (seed, GFLOP, accuracy %) points, the
    compute at which it reaches each target, and (``at``) its accuracy at that compute; 95% intervals
    by refitting on seeds drawn with replacement (percentiles; ``at_draws`` keeps each refit's value).
    None with fewer than 4 points or a fit that does not converge."""
    from scipy.optimize import curve_fit

    def fit(sample):
        x, y = np.array([p[1] for p in sample]), np.array([p[2] for p in sample])
        try:
            params, _ = curve_fit(saturating, x, y, p0=(y.max() + 5, 20.0, 0.5),
                                  bounds=([0, 0, 1e-3], [ASYMPTOTE_BOUND, 1e4, 5]), maxfev=20_000)
        except (RuntimeError, ValueError):
            return None
        a, b, c = params
        reach = [float((b / (a - t)) ** (1 / c) * 1000) if a > t else float("inf") for t in targets]
        return (a, b, c), reach

    if len(points) < 4:
        return None
    best = fit(points)
    if best is None:
        return None
    seeds = sorted({p[0] for p in points})
    rng = np.random.default_rng(0)
    # one seed: every resample is that seed again, an interval of width zero that says nothing
    draws = [fit([p for s in rng.choice(seeds, len(seeds)) for p in points if p[0] == s])
             for _ in range(200 if len(seeds) > 1 else 0)]
    draws = [d for d in draws if d is not None]
    asymptotes = [d[0][0] for d in draws]

    def interval(values):  # sample percentiles: a target never reached is inf, not averaged with others
        if not values:
            return [float("nan")] * 2
        return [float(np.percentile(values, q, method="inverted_cdf")) for q in (2.5, 97.5)]

    out = dict(zip(("a", "b", "c"), map(float, best[0])))
    out["draws"] = [tuple(map(float, d[0])) for d in draws]
    out["a_low"], out["a_high"] = interval(asymptotes)
    for k, target in enumerate(targets):
        out[f"reach_{target}"] = best[1][k]
        out[f"reach_{target}_low"], out[f"reach_{target}_high"] = interval([d[1][k] for d in draws])
    if at is not None:
        out["at"] = float(saturating(at, *best[0]))
        out["at_draws"] = [float(saturating(at, *d[0])) for d in draws]
        out["at_low"], out["at_high"] = interval(out["at_draws"])
    return out


@functools.lru_cache(maxsize=None)  # a reproduce writes its table after every round
def image_gflop(preset: str) -> float:
    """A training image's forward and backward GFLOP on the pair loss for a preset's network (the
    twin counts it with the FlopCounterMode every training counts its budget with)."""
    return METHODS.get(METHOD)(preset=preset).pair_image_gflop()


def paper_gflop() -> float:
    """Koch's schedule's training compute: pair views x 2 images x epochs x an image's GFLOP at 105x105."""
    return PAPER_PAIR_VIEWS * 2 * PAPER_EPOCHS * image_gflop("paper")


@TABLES.register("bridge")
class Bridge(Table):
    summary = "from our cpu recipe to Koch's tuned recipe, one change at a time, each step paired"

    def plan(self, preset, stored=None):
        if preset not in ENDS:
            raise UserError(f"bridge has the cpu and tiny (for tests) preset families, got --preset {preset}; "
                            "pass --preset cpu")
        steps = chain(preset)
        start = steps[0][1]
        labels = [label for label, _ in steps]
        pair = labels.index(PAIR_LINK) if PAIR_LINK in labels else None
        grid, rate = rate_cells(preset, steps[pair][1], start, stored) if pair is not None else ([], None)
        cells = []
        for i, (label, config) in enumerate(with_rate(steps, rate)):
            if i == pair:
                cells += grid
                if rate is None:
                    continue  # planned once its rate is chosen
            options = options_from(start, config)
            if i == pair:  # named even where it is the start's: the summary reads the chosen rate from it
                options["adam_lr"] = rate
            cells.append(Cell(label, METHOD, ENDS[preset][0], options, seeds=SEEDS))
        detour_protocols = tuple(p for p in PROTOCOLS if protocol_of(p)[0] in DETOUR_PROTOCOLS)  # with their options
        cells += [Cell(row, METHOD, ENDS[preset][0], options_from(start, config), protocols=detour_protocols,
                       seeds=SEEDS) for row, _, _, config in detours(preset, steps)]
        if learning := learning_end(preset):  # a preset of its own, so its runs are Tables 1-3's runs of it
            row, name = learning
            cells.append(Cell(row, METHOD, name, seeds=SEEDS))
        return PROTOCOLS, cells + curve_cells(preset, steps)

    def summarise(self, runs: list[PlannedRun], records: list[dict]) -> pd.DataFrame:
        """One row per link in chain order: per protocol the mean over seeds (± t-interval), and the
        step from the link before: the mean paired difference over seeds (± t-interval), the exact
        McNemar p on the pooled trials."""
        links = [r for r in runs if not is_rate_cell(r.cell) and not is_curve_cell(r.cell)
                 and not is_detour_cell(r.cell) and not is_learning_cell(r.cell)]
        family = next(f for f, (start, _) in ENDS.items() if start == runs[0].cell.preset)
        rate = next((r.cell.options["adam_lr"] for r in links if r.cell.row == PAIR_LINK), None)
        steps = with_rate(chain(family), rate)  # every link, the pair loss's too while its rate is being chosen
        out, previous = [], None
        for i, (row, config) in enumerate(steps):
            entry = {"link": row, "changed": changed_text(steps[i - 1][1], config) if i else ""}
            # what the link's training cost: the schedule's compute cap shows here, not in its options alone
            entry.update(budget_columns(row_records(links, row, names()[0])))
            for protocol in names():
                entry.update(cell_columns(links, row, protocol))
                if previous is not None:
                    entry.update(step_columns(links, previous, row, protocol))
            out.append(entry)
            previous = row
        chain_rows = [label for label, _ in steps]
        detour_runs = links + [r for r in runs if is_detour_cell(r.cell)]
        for row, link, base, config in detours(family, steps):
            entry = {"link": row, "changed": changed_text(dict(steps)[base], config), "detour_of": link}
            for protocol in DETOUR_PROTOCOLS:
                entry.update(cell_columns(detour_runs, row, protocol))
                entry.update(step_columns(detour_runs, base, row, protocol))
                if link in chain_rows:  # a change the chain folded into an earlier link has no step of its own
                    entry.update(interaction_columns(detour_runs, (base, row),
                                                     (chain_rows[chain_rows.index(link) - 1], link), protocol))
            out.append(entry)
        if learning_end(family):
            out.append(self.learning_entry(family, steps, links + [r for r in runs if is_learning_cell(r.cell)]))
        return pd.DataFrame(out)

    @staticmethod
    def learning_entry(family: str, steps: list[tuple[str, dict]], runs: list[PlannedRun]) -> dict:
        """The recipe of Koch's that learns, beside his tuned recipe: its cells and its paired step from that row."""
        row, preset = learning_end(family)
        base = koch_row(steps)
        entry = {"link": row, "changed": changed_text(dict(steps)[base], config_of(preset)), "beside": base}
        entry.update(budget_columns(row_records(runs, row, names()[0])))
        for protocol in names():
            entry.update(cell_columns(runs, row, protocol))
            entry.update(step_columns(runs, base, row, protocol))
        return entry

    def write(self, frame, runs, records, out_dir: Path, about: Provenance) -> None:
        out_dir.mkdir(parents=True, exist_ok=True)
        frame.to_csv(out_dir / "bridge.csv", index=False)
        end, learning = far_end(about.preset), learning_end(about.preset)
        lines = [f"# bridge: {self.summary}", "", f"- command: `{about.command}`", machine_line(runs), compute_line(runs),
                 f"- training seeds: {SEEDS} a link; cells: accuracy (%), mean over seeds ± the 95% t-interval over "
                 "seeds; a step: the link minus the one before, seed k against seed k on identical trials (mean ± "
                 "t-interval over seeds), with the exact McNemar p on the pooled trials",
                 f"- from `{METHOD} --preset {ENDS[about.preset][0]}` to `--preset {end}`"
                 f"{end_provenance(end)}; each link's changed options are listed below",
                 *([f"- beside Koch's end: `--preset {learning[1]}`{end_provenance(learning[1])}, the recipe of his "
                    "that learns (its own section)"] if learning else []),
                 "- TFLOP: a link's training compute, forward and backward (its first seed's; steps and images in the "
                 f"CSV); {IMPROVING_MARK}",
                 *about.missing_line(len(runs)), *stalled_lines(frame), "",
                 "| link | TFLOP | " + " | ".join(f"{p} | step | p" for p in names()) + " |",
                 "|---|---|" + "---|---|---|" * len(PROTOCOLS)]
        chain_frame, detour_frame = split_detours(frame)
        for _, row in chain_frame.iterrows():
            texts = [training_text(row)]
            for p in names():
                texts += [cell_text(row, p), step_text(row, p), "" if pd.isna(row.get(f"{p}_p")) else p_text(row[f"{p}_p"])]
            lines.append(f"| {row['link']} | " + " | ".join(texts) + " |")
        lines += ["", "Options each link changed:", ""]
        lines += [f"- {row['link']}: {row['changed']}" for _, row in chain_frame.iterrows() if row["changed"]]
        points, paper = curve_points(runs), paper_gflop()
        trends = curve_trends(points, paper)
        lines += ["", *detour_lines(detour_frame), "", *learning_lines(frame), *rate_lines(runs), "",
                  *curve_lines(points, trends, paper)]
        write_atomic(out_dir / "bridge.md", "\n".join(lines) + "\n")
        points.to_csv(out_dir / "bridge-curves.csv", index=False)
        waterfall(chain_frame, out_dir / "bridge.png")
        compute_figure(points, trends, paper, out_dir / "bridge-curves.png")


def row_records(runs: list[PlannedRun], row: str, protocol: str) -> list[dict]:
    """A row's stored records on one protocol, one per training seed."""
    return [r.record for r in runs if r.cell.row == row and r.protocol == protocol and r.record is not None]


def stalled(record: dict) -> bool:
    """A training that did not learn: it fails the learning check (``records.did_not_learn``), or its
    validation accuracy never moved, the same in every epoch (a network whose outputs never came apart
    scores every candidate alike and picks at chance; trainings from before the check recorded no
    untrained score, and this catches theirs)."""
    scores = [h.get("validation_accuracy") for h in (record.get("training") or {}).get("history") or []]
    return did_not_learn(record) is not None or (len(scores) > 1 and None not in scores and len(set(scores)) == 1)


def stalled_lines(frame: pd.DataFrame) -> list[str]:
    """A header line per row and set of stalled seeds, naming the protocols whose networks stalled
    (verification trains its own): those seeds stay in the means, and this says why they sit at chance."""
    lines = []
    for _, row in frame.iterrows():
        protocols_of: dict[str, list[str]] = {}
        for protocol in names():
            seeds = row.get(f"{protocol}_stalled_seeds")
            if isinstance(seeds, str) and seeds:
                protocols_of.setdefault(seeds, []).append(protocol)
        lines += [f"- did not learn: {row['link']}, seed{'s' * (',' in seeds)} {seeds} on {', '.join(protocols)} "
                  "(the learning check: its loss never fell 1% below a constant guess's, or its validation never "
                  "beat the untrained network's or never moved; kept in the means, so a step to or from it is "
                  "no measurement of the change)" for seeds, protocols in protocols_of.items()]
    return lines


def cell_columns(runs: list[PlannedRun], row: str, protocol: str) -> dict:
    """A row's cell on one protocol: mean over its stored seeds (± t-interval), how many there are, and
    the seeds whose training stalled (comma-separated, '' for none)."""
    done = [r for r in runs if r.cell.row == row and r.protocol == protocol and r.record is not None]
    out = {}
    if done:
        out[protocol], out[f"{protocol}_ci95"], _ = rounded_cell([r.record for r in done])
    return {**out, f"{protocol}_seeds": len(done),
            f"{protocol}_stalled_seeds": ",".join(str(r.seed) for r in done if stalled(r.record))}


def interaction_columns(runs: list[PlannedRun], detour: tuple[str, str], in_chain: tuple[str, str],
                        protocol: str) -> dict:
    """A change's step in the chain and how much more it is worth as a detour: per training seed, the
    detour's step minus the chain's (mean ± t-interval over seeds)."""
    (a, b), (c, d) = ([accuracy_by_seed(runs, row, protocol) for row in pair] for pair in (detour, in_chain))
    chain_seeds = sorted(set(c) & set(d))
    if not chain_seeds:
        return {}
    out = {f"{protocol}_chain_step": round(float(np.mean([d[s] - c[s] for s in chain_seeds])), 2)}
    seeds = sorted(set(a) & set(b) & set(c) & set(d))
    if seeds:
        differences = [(b[s] - a[s]) - (d[s] - c[s]) for s in seeds]
        mean, half = t_interval(differences) if len(seeds) > 1 else (differences[0], float("nan"))
        out.update({f"{protocol}_interaction": round(mean, 2), f"{protocol}_interaction_ci95": round(half, 2)})
    return out


def end_provenance(name: str) -> str:
    """The far end's study and trial: a tune-written preset's [about], or a built-in tuned preset's
    ``preset_sources`` entry."""
    about = preset_about(METHOD, name) or METHODS.get(METHOD).preset_sources.get(name)
    if not about:
        return ""
    return (f" (bench tune study `{about.get('study')}`, trial {about.get('trial')}, {about.get('score')}% on "
            f"{about.get('scored_on', 'validation')})")


def changed_text(before: dict, after: dict) -> str:
    """The options that differ between two links' configs, as ``name: old → new``, leaving out those the
    training never reads (the objective's ``ignores``); a link that changes the objective names the set
    options the new one stops reading, as dropped."""
    unread = set(ignored_by(after)) if "objective" in after else set()
    changes = [f"{k}: {short(before[k])} → {short(after[k])}" for k in after if before[k] != after[k] and k not in unread]
    if before.get("objective") != after.get("objective"):
        defaults = {f.name: f.default for f in dataclasses.fields(METHODS.get(METHOD).Config)}
        dropped = [k for k in sorted(unread) if before.get(k) != defaults.get(k) and k not in set(ignored_by(before))]
        if dropped:
            changes.append(f"dropped (the {after['objective']} objective never reads them): {', '.join(dropped)}")
    return ", ".join(changes)


def short(value) -> str:
    """An option's value in a few characters: drawers 1-12, rates to 3 digits."""
    if isinstance(value, (tuple, list)):
        if value and all(isinstance(v, int) for v in value) and list(value) == list(range(value[0], value[-1] + 1)):
            return format_seeds(list(value))
        return "(" + ",".join(short(v) for v in value) + ")"
    if isinstance(value, float):
        return f"{value:,.0f}" if value.is_integer() and abs(value) >= 1000 else f"{value:.3g}"
    return str(value)


def seeds_text(seeds: int) -> str:
    """' (k of 3 seeds)' for a figure short of its seeds; nothing when all are in."""
    return "" if seeds == SEEDS else f" ({seeds} of {SEEDS} seeds)"


def cell_text(row, protocol: str) -> str:
    if pd.isna(row.get(protocol)):
        return "not run"
    seeds = int(row.get(f"{protocol}_seeds", 0))
    return f"{row[protocol]:.1f}" + (f" ± {row[f'{protocol}_ci95']:.1f}" if seeds > 1 else "") + seeds_text(seeds)


def training_text(row) -> str:
    """A link's training TFLOP, ↑ where it was still improving at its end; blank before it ran."""
    if pd.isna(row.get("gflop")):
        return ""
    return gflop_text(row["gflop"] / 1000) + (" ↑" if verdict(row.get("still_improving")) else "")


def step_text(row, protocol: str) -> str:
    if pd.isna(row.get(f"{protocol}_step")):
        return ""
    half = row.get(f"{protocol}_step_ci95")
    if row[f"{protocol}_step"] == 0 and half == 0 and row.get(f"{protocol}_p") == 1:
        # every trial answered alike on every seed: one network (verification trains on drawers 1-12 anyway)
        return "none: the same network here"
    return f"{row[f'{protocol}_step']:+.1f}" + ("" if pd.isna(half) else f" ± {half:.1f}")


def split_detours(frame: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The chain's rows and the detours' rows of a summary (the learning recipe's row is in neither)."""
    detour, beside = (frame[c].notna() if c in frame else pd.Series(False, index=frame.index)
                      for c in ("detour_of", "beside"))
    return frame[~detour & ~beside], frame[detour]


def learning_lines(frame: pd.DataFrame) -> list[str]:
    """Koch's end beside the recipe of his that learns on a CPU, with the step between them."""
    rows = frame[frame["beside"].notna()] if "beside" in frame else frame.iloc[:0]
    if rows.empty:
        return []
    lines = ["## Koch's end beside the recipe of his that learns", "",
             "Koch's tuned recipe (the chain's last link at its start's input size) never learns at a CPU's "
             "budget. The row below is the recipe of his that does, Tables 1-3's rows: his pairs, distortions, "
             "weighted-L1 head and pair loss, with the options listed under it changed (chosen on validation by "
             "the study its method file cites). Its step is from Koch's tuned row, seed k against seed k on "
             "identical trials.", "",
             "| recipe | TFLOP | " + " | ".join(f"{p} | step | p" for p in names()) + " |",
             "|---|---|" + "---|---|---|" * len(names())]
    koch = frame[frame["link"] == rows.iloc[0]["beside"]]
    for _, row in pd.concat([koch, rows]).iterrows():
        texts, beside = [training_text(row)], pd.notna(row.get("beside"))
        for p in names():
            texts += [cell_text(row, p), step_text(row, p) if beside else "",
                      p_text(row[f"{p}_p"]) if beside and pd.notna(row.get(f"{p}_p")) else ""]
        lines.append(f"| {row['link']} | " + " | ".join(texts) + " |")
    return lines + ["", *(f"- {row['link']}: {row['changed']}" for _, row in rows.iterrows()), ""]


def detour_lines(frame: pd.DataFrame) -> list[str]:
    """The changes measured the other way: each alone from an earlier link, beside its step in the chain."""
    lines = ["## Changes that interact, measured the other way", "",
             "Each change below is also made alone from an earlier link (before the pair loss, where accuracy is "
             "still high), on Koch's task and Lake's runs. 'here' is its step there (paired, ± t-interval over "
             "seeds, McNemar p); 'in chain' its step at its place in the chain (mean over seeds); 'difference' "
             "is here minus in chain, seed by seed (± t-interval): what the changes between the two places "
             "do to its worth.", ""]
    if frame.empty:
        return lines + ["no detours planned"]
    lines += ["| change, from | " + " | ".join(f"{p} | here | p | in chain | difference" for p in DETOUR_PROTOCOLS)
              + " |", "|---|" + "---|---|---|---|---|" * len(DETOUR_PROTOCOLS)]
    for _, row in frame.iterrows():
        texts = []
        for p in DETOUR_PROTOCOLS:
            chain_step = row.get(f"{p}_chain_step")
            difference = row.get(f"{p}_interaction")
            half = row.get(f"{p}_interaction_ci95")
            texts += [cell_text(row, p), step_text(row, p),
                      "" if pd.isna(row.get(f"{p}_p")) else p_text(row[f"{p}_p"]),
                      "" if pd.isna(chain_step) else f"{chain_step:+.1f}",
                      "" if pd.isna(difference) else f"{difference:+.1f}" + ("" if pd.isna(half) else f" ± {half:.1f}")]
        lines.append(f"| {row['link']} | " + " | ".join(texts) + " |")
    return lines


def rate_lines(runs: list[PlannedRun]) -> list[str]:
    """The pair loss's Adam rate: each rate's best validation accuracy (Koch's 320 validation trials)."""
    grid = [r for r in runs if is_rate_cell(r.cell)]
    lines = ["## The pair loss's Adam rate, chosen on validation", "",
             "Each rate trained once (seed 0); its best epoch on the 320 validation trials of Koch's validation "
             "alphabets (noisy: about ± 5 points at 50%). The chosen rate is the best (a tie: the smaller).", ""]
    done = [(r.cell.options["adam_lr"], r.record["training"]["best_validation"]) for r in grid if r.record is not None]
    if not done:
        return lines + ["not run yet"]
    best = chosen_rate(done)
    return lines + [", ".join(f"**{lr:g}: {100 * v:.1f}**" if lr == best else f"{lr:g}: {100 * v:.1f}"
                              for lr, v in sorted(done))]


def curve_points(runs: list[PlannedRun]) -> pd.DataFrame:
    """Each stored compute-curve run as a point: end, protocol, seed, snapshot epoch, GFLOP spent to
    that snapshot, accuracy (%), GFLOP per training second."""
    from fewshot_bench.records import epoch_gflop

    out = []
    for run in runs:
        if not is_curve_cell(run.cell) or run.record is None:
            continue
        epoch = int(run.cell.options["keep"].removeprefix("epoch"))
        # every member's epochs up to the snapshot: an ensemble's compute is all its networks'
        history = [h for h in run.record["training"]["history"] if h["epoch"] < epoch]
        gflop = sum(map(epoch_gflop, history))
        out.append({"end": run.cell.row, "protocol": run.protocol, "seed": run.seed, "epoch": epoch,
                    "share": FRACTIONS[epoch], "gflop": gflop, "accuracy": 100 * run.record["accuracy"],
                    "gflop_per_s": gflop / max(1e-9, sum(h["seconds"] for h in history))})
    return pd.DataFrame(out, columns=["end", "protocol", "seed", "epoch", "share", "gflop", "accuracy", "gflop_per_s"])


def curve_trends(points: pd.DataFrame, paper: float) -> dict:
    """Each (end, protocol)'s fitted trend (``fit_trend``): where it reaches Koch's figure, and what it
    says at Koch's compute; a pair with too few points is left out."""
    trends = {}
    for (end, protocol), part in points.groupby(["end", "protocol"], sort=False):
        trend = fit_trend(list(part[["seed", "gflop", "accuracy"]].itertuples(index=False, name=None)),
                          (TARGETS[protocol],), at=paper)
        if trend is not None:
            trends[(end, protocol)] = trend
    return trends


def curve_lines(points: pd.DataFrame, trends: dict, paper: float) -> list[str]:
    """Both ends' accuracy against compute, the fitted trends, where each would reach Koch's figures,
    and what Koch's own schedule costs."""
    lines = ["## Accuracy against compute", "",
             f"Both ends trained to one compute budget ({CURVE_GFLOP:,.0f} GFLOP for the cpu family) over {CURVE_EPOCHS} "
             "epochs (no early stopping; our end at a constant rate), read after epochs "
             f"{', '.join(map(str, FRACTIONS))}; {SEEDS} training seeds. Trend: "
             "accuracy = a - b (GFLOP/1000)^-c (scipy's curve_fit), 95% intervals from refits on seeds drawn "
             "with replacement; 'reaches' is the compute where the trend meets the target (never: its "
             "asymptote a lies under it).", ""]
    if points.empty:
        lines.append("not run yet")
    else:
        lines += ["| end | protocol | " + " | ".join(FRACTIONS.values()) + " | a (asymptote) | reaches |",
                  "|---|---|" + "---|" * len(FRACTIONS) + "---|---|"]
        for (end, protocol), part in points.groupby(["end", "protocol"], sort=False):
            shares = part.groupby("share").agg(accuracy=("accuracy", "mean"), gflop=("gflop", "mean"),
                                               seeds=("seed", "nunique"))
            texts = [f"{shares.at[s, 'accuracy']:.1f} ({gflop_text(shares.at[s, 'gflop'])})"
                     + seeds_text(shares.at[s, "seeds"]) if s in shares.index else "" for s in FRACTIONS.values()]
            target, trend = TARGETS[protocol], trends.get((end, protocol))
            limit = EXTRAPOLATION * part["gflop"].max()  # past it, a trend's read is no measurement
            if trend is None:
                fitted = ["too few points", ""]
            else:
                fitted = [f"{trend['a']:.1f}" + interval_text(trend["a_low"], trend["a_high"]) + bound_text(trend),
                          f"{target}: {reach_text([trend[f'reach_{target}{k}'] for k in ('', '_low', '_high')], limit)}"]
            lines.append(f"| {end} | {protocol} | " + " | ".join(texts) + " | " + " | ".join(fitted) + " |")
        lines += ["", "Cells: accuracy (%) at each share of the budget, mean over seeds (GFLOP spent to it); "
                  f"a cell with fewer than {SEEDS} seeds says how many it has."]
        lines += ["", *paper_compute_lines(trends, paper, points["gflop"].max())]
    rate = points.loc[points["end"] == CURVE_ROWS[1], "gflop_per_s"].median() if not points.empty else float("nan")
    lines += ["", f"Koch's schedule for 92.0 and 93.4 (150k pairs with 8 distortions each: {PAPER_PAIR_VIEWS:,} pair "
              f"views an epoch, up to {PAPER_EPOCHS} epochs, {image_gflop('paper'):.2f} GFLOP an image forward and "
              f"backward at 105x105): {paper:,.0f} GFLOP"
              + ("" if np.isnan(rate) else f"; at the {rate:.3g} GFLOP/s our Koch-end trainings ran here, "
                 f"{paper / rate / 86400:,.0f} days")]
    return lines


def reach_text(reach: list[float], limit: float) -> str:
    """Where a trend meets its target, with its interval: "never" where its asymptote lies under it,
    ``BEYOND`` where that compute (or an interval's end) lies past ``limit``."""
    def within(value: float) -> str:
        return gflop_text(value) if value <= limit or np.isinf(value) else "beyond"

    if not np.isinf(reach[0]) and reach[0] > limit:
        return BEYOND
    return ("never" if np.isinf(reach[0]) else f"{reach[0]:,.0f} GFLOP") + interval_text(reach[1], reach[2], within)


def paper_compute_lines(trends: dict, paper: float, measured: float = float("inf")) -> list[str]:
    """Each end's trend read at Koch's compute, and ours minus his (95% interval: the two ends' refits
    on seeds drawn with replacement, taken in pairs); none where Koch's compute lies more than
    ``EXTRAPOLATION`` times past the largest compute ``measured``."""
    if paper > EXTRAPOLATION * measured:
        return [f"At Koch's compute ({paper:,.0f} GFLOP, {paper / measured:,.0f}x the largest budget measured) the "
                f"trends are {BEYOND} (more than {EXTRAPOLATION:g}x past it): no figure is read there."]
    lines = [f"At Koch's compute ({paper:,.0f} GFLOP), the trends say (an extrapolation beyond the "
             "budget measured: it holds only as far as the power law does):", ""]
    for protocol in CURVE_PROTOCOLS:
        ours, koch = (trends.get((row, protocol_of(protocol)[0])) for row in CURVE_ROWS)
        texts = [f"{row}: {t['at']:.1f}" + interval_text(t["at_low"], t["at_high"]) + bound_text(t)
                 for row, t in zip(CURVE_ROWS, (ours, koch)) if t is not None]
        if ours is not None and koch is not None:
            pairs = min(len(ours["at_draws"]), len(koch["at_draws"]))
            difference = np.subtract(ours["at_draws"][:pairs], koch["at_draws"][:pairs])
            low, high = (float(np.percentile(difference, q)) for q in (2.5, 97.5)) if pairs else (np.nan, np.nan)
            texts.append(f"ours minus Koch's {ours['at'] - koch['at']:+.1f}"
                         + interval_text(low, high, lambda v: f"{v:+.1f}"))
        lines.append(f"- {protocol_of(protocol)[0]}: " + ("; ".join(texts) if texts else "too few points"))
    return lines


def bound_text(trend: dict) -> str:
    """A note on a trend whose asymptote sits on its bound: its points rise without bending, so they
    do not pin where it levels off, and any read beyond them is the bound's, not the data's."""
    return " (asymptote at the fit's bound: not pinned)" if trend["a"] >= ASYMPTOTE_BOUND - 0.05 else ""


def interval_text(low: float, high: float, text=lambda v: f"{v:.1f}") -> str:
    """A trend's 95% interval as `` [low, high]``; with one seed there is none, and it says so."""
    if np.isnan(low) or np.isnan(high):
        return " (one seed: no interval)"
    return f" [{text(low)}, {text(high)}]"


def gflop_text(value: float) -> str:
    """GFLOP to whole units (a tiny training's fractions to two digits); a target never reached: never."""
    if np.isinf(value):
        return "never"
    return f"{value:,.0f}" if value >= 10 else f"{value:.2g}"


# a label's white ground, so a line or bar under it does not cross its text
LABEL_GROUND = {"facecolor": "white", "edgecolor": "none", "alpha": 0.85, "pad": 0.5}


def waterfall(frame: pd.DataFrame, path: Path) -> bool:
    """Koch's task from our recipe to Koch's: the start as a bar, then each step as a floating bar
    from the link before to the link (error bar: the step's interval over seeds)."""
    plt = pyplot()
    protocol = names()[0]
    if plt is None or frame.empty or protocol not in frame or frame[protocol].isna().all():
        return False
    fig, ax = plt.subplots(figsize=(9, 4.6))
    level, labels = None, []
    for i, (_, row) in enumerate(frame.iterrows()):
        labels.append(row["link"])
        if pd.isna(row.get(protocol)):
            continue
        if level is None or pd.isna(row.get(f"{protocol}_step")):
            ax.bar(i, row[protocol], color="#4c72b0")
            ax.annotate(f"{row[protocol]:.1f}", (i, row[protocol]), ha="center", va="bottom", fontsize=7)
        else:
            step = row[f"{protocol}_step"]
            ax.bar(i, step, bottom=level, color="#55a868" if step >= 0 else "#c44e52")
            half = row.get(f"{protocol}_step_ci95")
            half = 0.0 if pd.isna(half) else half
            if half:
                ax.errorbar(i, level + step, yerr=half, color="black", capsize=3, linewidth=1)
            # a gain labelled above its bar, a loss below it: neighbours' labels then do not collide
            # in two short lines, narrower than a bar's slot: twelve labels side by side stay apart;
            # anchored past the error bar's end, so the label never sits on the bar; an interval
            # running off the plot (two seeds: t = 12.7) keeps it inside, on a white ground
            tip = min(max(level + step + (half if step >= 0 else -half), 10.0), 90.0)
            ax.annotate(f"{step:+.1f}\n→ {row[protocol]:.1f}", (i, tip), ha="center",
                        bbox=LABEL_GROUND,
                        va="bottom" if step >= 0 else "top", fontsize=7,
                        xytext=(0, 2 if step >= 0 else -2), textcoords="offset points")
        level = row[protocol]
    ax.set_ylim(0, min(100, ax.get_ylim()[1] + 8))
    ax.set_xticks(range(len(labels)), labels, rotation=35, ha="right", fontsize=7)
    ax.set_ylabel(f"{protocol} accuracy (%)")
    ax.set_title("bridge: each change's step on Koch's task (error bar: 95% t-interval over seeds)", fontsize=10)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def compute_figure(points: pd.DataFrame, trends: dict, paper: float, path: Path) -> bool:
    """Accuracy against compute, a panel per protocol: each end's seeds (dots) and their mean (line),
    its fitted trend run on to Koch's compute (dashed, 95% band from the refits), Koch's figure
    (dotted) and his schedule's compute (grey)."""
    plt = pyplot()
    if plt is None or points.empty:
        return False
    fig, axes = plt.subplots(1, len(CURVE_PROTOCOLS), figsize=(9, 3.8), squeeze=False)
    for ax, protocol in zip(axes[0], (protocol_of(p)[0] for p in CURVE_PROTOCOLS)):
        for end, colour in zip(CURVE_ROWS, ("#4c72b0", "#c44e52")):
            part = points[(points["end"] == end) & (points["protocol"] == protocol)]
            if part.empty:
                continue
            label = end.removesuffix(" (compute curve)")
            ax.scatter(part["gflop"], part["accuracy"], s=10, alpha=0.35, color=colour)
            means = part.groupby("share")[["gflop", "accuracy"]].mean().sort_values("gflop")
            ax.plot(means["gflop"], means["accuracy"], "o-", color=colour, markersize=4, label=label)
            trend = trends.get((end, protocol))
            if trend is None:
                continue
            # from the end's first point on: the trend says nothing under the compute measured
            xs = np.logspace(np.log10(part["gflop"].min()), np.log10(paper) + 0.3, 200)
            ax.plot(xs, saturating(xs, trend["a"], trend["b"], trend["c"]), "--", color=colour, linewidth=1)
            if trend["draws"]:
                band = np.percentile([saturating(xs, *d) for d in trend["draws"]], (2.5, 97.5), axis=0)
                ax.fill_between(xs, band[0], band[1], color=colour, alpha=0.12, linewidth=0)
        target = TARGETS[protocol]
        ax.axhline(target, color="black", linestyle=":", linewidth=1)
        ax.annotate(f"Koch {target:g}", (0.01, target), xycoords=("axes fraction", "data"), va="bottom", fontsize=7)
        ax.axvline(paper, color="grey", linewidth=1)
        ax.annotate("Koch's schedule", (paper, 35), rotation=90, ha="right", va="bottom", fontsize=7, color="grey",
                    bbox=LABEL_GROUND)
        ax.set_xscale("log")
        ax.set_ylim(0, 100)
        ax.set_xlabel("training GFLOP (forward and backward)")
        ax.set_ylabel(f"{protocol} accuracy (%)")
        ax.set_title(protocol, fontsize=9)
        ax.grid(alpha=0.3)
    # one legend under both panels: inside one, it would sit on some end's points
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=len(labels) or 1, fontsize=7, frameon=False)
    fig.suptitle("bridge: accuracy against compute (dashed: fitted trend, band: 95% over seeds)", fontsize=10)
    fig.tight_layout(rect=(0, 0.05, 1, 1))
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True
