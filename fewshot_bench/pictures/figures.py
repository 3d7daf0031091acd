"""Pictures drawn from run records with matplotlib: galleries of trials (images from the
datasets' own pixels, one screen pixel per image pixel), learning curves, and a heatmap of
accuracy by method and test alphabet. Needs the ``plot`` extra (``pip install -e .[plot]``)."""
from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
import pandas as pd

from fewshot_bench.errors import UserError
from fewshot_bench.stats import p_text
from fewshot_bench.tables.store import preset_label

DPI = 100
PANEL = 105  # pixels per image panel: Omniglot's native size; smaller images are centred in it


def pyplot():
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise UserError("pictures need matplotlib: pip install -e '.[plot]'") from None
    return plt


# ---------------------------------------------------------------- images by identity

class ImageSource:
    """The pixels of an image named as records name them: ``Alphabet/characterNN/DD`` (Omniglot),
    ``runNN/test/itemMM.png`` (Lake's runs, from ``runs``), ``mnist/INDEX``."""

    def __init__(self, data_root: Path | None = None, runs: Path | None = None):
        self.data_root, self.runs = data_root, runs

    def __call__(self, image_id: str) -> np.ndarray:
        if image_id.startswith("mnist/"):
            return self._mnist().images[int(image_id.split("/")[1])]
        if "/test/" in image_id or "/training/" in image_id:
            return self._runs.image(image_id)
        alphabet, character, drawer = image_id.split("/")
        alphabet, _, degrees = alphabet.partition("@rot")  # a class of Vinyals' split: a rotated character
        try:
            image = self._omniglot_rows[(alphabet, character, int(drawer))]
            return np.rot90(image, int(degrees) // 90) if degrees else image
        except KeyError:
            raise UserError(f"no Omniglot image {image_id} under the data root") from None

    @functools.cached_property
    def _omniglot_rows(self) -> dict:
        from fewshot_bench.data.omniglot import omniglot

        images = omniglot(self.data_root)
        meta = images.meta
        return {key: images.images[i] for i, key in enumerate(zip(meta["alphabet"], meta["character"], meta["drawer"]))}

    def _mnist(self):
        from fewshot_bench.data.datasets import data_root, load_mnist

        return load_mnist(data_root(self.data_root))

    @functools.cached_property
    def _runs(self):
        from fewshot_bench.data.datasets import data_root
        from fewshot_bench.data.lake import RUNS_FILE, RunFiles

        return RunFiles(Path(self.runs) if self.runs else data_root(self.data_root) / RUNS_FILE)


def source_for(record: dict, data_root: Path | None = None) -> ImageSource:
    runs = (record.get("protocol_config") or {}).get("runs") or None
    return ImageSource(data_root, Path(runs) if runs else None)


def as_ink(image: np.ndarray) -> np.ndarray:
    """Ink dark on white, as the datasets' PNGs look (uint8 ink=1 or 0-255 grey, ink high)."""
    image = np.asarray(image, dtype=float)
    return 1 - (image / 255 if image.max() > 1 else image)


# ---------------------------------------------------------------- galleries

def gallery(rows: list[tuple[str, list[tuple[np.ndarray, str]]]], path: Path, title: list[str]) -> Path:
    """A grid: each row a heading and panels (image, caption), every image at its native size;
    ``title``: lines above the grid (what it shows, what the numbers mean)."""
    plt = pyplot()
    if not rows:
        raise UserError(f"nothing to draw for {path.name}: no such trials")
    cols = max(len(panels) for _, panels in rows)
    cell_w, cell_h, head, top = PANEL + 20, PANEL + 34, 16, 18 + 13 * len(title)
    # wide enough for every title line as it is set (measured in the font, bold first line included)
    text = max(text_pixels(line, 9 if k == 0 else 7.5, "bold" if k == 0 else "normal") for k, line in enumerate(title))
    width = max(cols * cell_w + 20, 440, 30 + text)
    height = top + len(rows) * (cell_h + head)
    fig = plt.figure(figsize=(width / DPI, height / DPI), dpi=DPI)
    for k, line in enumerate(title):
        fig.text(10 / width, 1 - (8 + 13 * k) / height, line, va="top", fontsize=9 if k == 0 else 7.5,
                 weight="bold" if k == 0 else "normal")
    for r, (heading, panels) in enumerate(rows):
        y0 = height - top - r * (cell_h + head)
        fig.text(10 / width, (y0 - 2) / height, heading, va="top", fontsize=7, family="monospace")
        for c, (image, caption) in enumerate(panels):
            h, w = image.shape
            left = 10 + c * cell_w + (PANEL - w) / 2
            bottom = y0 - head - PANEL + (PANEL - h) / 2
            ax = fig.add_axes([left / width, bottom / height, w / width, h / height])
            ax.imshow(as_ink(image), cmap="gray", vmin=0, vmax=1, interpolation="nearest")
            ax.set_xticks([]), ax.set_yticks([])
            fig.text((10 + c * cell_w + PANEL / 2) / width, (y0 - head - PANEL - 3) / height, caption,
                     ha="center", va="top", fontsize=7)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=DPI)
    plt.close(fig)
    return path


def text_pixels(line: str, size: float, weight: str = "normal") -> float:
    """The width in pixels (at ``DPI``) of ``line`` set in matplotlib's default font at ``size`` points."""
    from matplotlib.font_manager import FontProperties
    from matplotlib.textpath import TextToPath

    width, _, _ = TextToPath().get_text_width_height_descent(line, FontProperties(size=size, weight=weight), ismath=False)
    return width * DPI / 72


SCORES = "scores: the method's similarity of query and support, higher = more alike"


def short(image_id: str) -> str:
    """``Tibetan/character05/17`` -> ``c05 d17``; other ids: their last part."""
    parts = image_id.split("/")
    if len(parts) == 3 and parts[1].startswith("character"):
        return f"c{parts[1][9:]} d{parts[2]}"
    return parts[-1]


def failure_gallery(record: dict, wrong: pd.DataFrame, source, path: Path) -> Path:
    """Failed trials (``failures.distinct_failures``): query | correct support | chosen support,
    each image named by character and drawer; a trial several draws got wrong is shown once."""
    rows = [(f"{t.group}: wrong by {t.wrong_by:.3g}" + (f", x {t.draws} draws" if getattr(t, "draws", 1) > 1 else ""),
             [(source(t.query), f"query {short(t.query)}"),
              (source(t.correct_support), f"correct {short(t.correct_support)}: {t.score_correct:.3g}"),
              (source(t.chosen_support), f"chosen {short(t.chosen_support)}: {t.score_chosen:.3g}")])
            for t in wrong.itertuples()]
    return gallery(rows, path, [f"{label(record)}: failed trials, most confidently wrong first",
                                f"{SCORES}; wrong by = chosen minus correct; cNN dNN = character and drawer"])


def verification_gallery(record: dict, false_accepts: pd.DataFrame, false_rejects: pd.DataFrame, source,
                         path: Path) -> Path:
    rows = [(f"false accept, {p.first.split('/')[0]}",
             [(source(p.first), short(p.first)), (source(p.second), f"{short(p.second)}  {p.score:.3g}")])
            for p in false_accepts.itertuples()]
    rows += [(f"false reject, {p.first.split('/')[0]}",
              [(source(p.first), short(p.first)), (source(p.second), f"{short(p.second)}  {p.score:.3g}")])
             for p in false_rejects.itertuples()]
    threshold = record["draws"][0]["threshold"]
    return gallery(rows, path, [f"{label(record)}: false accepts, then false rejects",
                                f"score: same-ness of the pair, 'same' above the threshold {threshold:.3g}"])


def comparison_gallery(a: dict, b: dict, only_a: pd.DataFrame, only_b: pd.DataFrame, source, path: Path,
                       test: dict) -> Path:
    """The trials only one method gets right: query | correct support | the wrong method's choice.
    ``test``: McNemar's counts and p-value (``stats.mcnemar_exact``)."""
    def row(t, winner, loser, chosen):
        return (f"{t.group}: only {winner} right",
                [(source(t.query), f"query {short(t.query)}"),
                 (source(t.correct_support), f"correct {short(t.correct_support)}"),
                 (source(chosen), f"{loser} chose {short(chosen)}")])

    rows = [row(t, a["method"], b["method"], t.b_chosen) for t in only_a.itertuples()]
    rows += [row(t, b["method"], a["method"], t.chosen_support) for t in only_b.itertuples()]
    return gallery(rows, path, [
        f"{label(a)} vs {label(b)}: the trials only one of them gets right",
        f"only {a['method']} right: {test['only_a']}; only {b['method']} right: {test['only_b']}; "
        f"exact McNemar {p_text(test['p_value'])}; shown: up to {max(len(only_a), len(only_b))} a side",
        "each side: the loser's most confident mistakes first"])


def label(record: dict) -> str:
    preset = f" ({record['preset']})" if record.get("preset") else ""
    return f"{record['method']}{preset} on {record['protocol']}"


# ---------------------------------------------------------------- curves and heatmaps

def kept_epoch(history: pd.DataFrame, keep: str) -> pd.Series:
    """The history row of the weights a training kept: the last epoch, a snapshot (``epochN``,
    counted from 1), or the best validation accuracy."""
    if keep == "last":
        return history.iloc[-1]
    if keep.startswith("epoch"):
        return history[history["epoch"] == int(keep.removeprefix("epoch")) - 1].iloc[0]
    return history.loc[history["validation_accuracy"].idxmax()]


def learning_curves(records: list[dict], path: Path) -> Path:
    """Training loss and validation accuracy per epoch, one line per run and ensemble member."""
    plt = pyplot()
    trained = [r for r in records if (r.get("training") or {}).get("history")]
    if not trained:
        raise UserError("no run with a training history: only learned methods have learning curves")
    fig, (loss_ax, acc_ax) = plt.subplots(1, 2, figsize=(10, 3.6))
    for r in trained:
        history = pd.DataFrame(r["training"]["history"])
        members = history.groupby("member") if "member" in history else [(None, history)]
        keep = (r.get("method_config") or {}).get("keep", "best")
        for member, h in members:
            name = f"{r['method']} ({preset_label(r)})" + (f" member {member + 1}" if member is not None else "")
            loss_ax.plot(h["epoch"] + 1, h["loss"], label=name)
            if h["validation_accuracy"].notna().any():
                line, = acc_ax.plot(h["epoch"] + 1, 100 * h["validation_accuracy"], label=name)
                kept = kept_epoch(h, keep)
                acc_ax.plot(kept["epoch"] + 1, 100 * kept["validation_accuracy"], marker="*", markersize=11,
                            color=line.get_color(), linestyle="none")
    from matplotlib.ticker import MaxNLocator

    for ax in (loss_ax, acc_ax):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # epochs are whole
    objectives = sorted({(r.get("method_config") or {}).get("objective", "?") for r in trained})
    loss_ax.set(xlabel="epoch", ylabel="training loss", title=f"training loss ({', '.join(objectives)} objective)")
    acc_ax.set(xlabel="epoch", ylabel="accuracy (%)", ylim=(0, 100),
               title="validation accuracy (* = the weights kept)")
    handles, labels = acc_ax.get_legend_handles_labels()
    if len(labels) <= 4 and max(map(len, labels), default=0) <= 40:
        acc_ax.legend(fontsize=7, loc="lower right")
        fig.tight_layout()
    else:  # many runs or long names: the legend below the panels, where it hides no curve
        legend_height = 0.16 * len(labels)  # inches, one row per line
        fig.set_figheight(3.6 + legend_height)
        fig.legend(handles, labels, fontsize=7, loc="lower center", ncol=1, frameon=False)
        fig.tight_layout(rect=(0, legend_height / fig.get_figheight(), 1, 1))
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=DPI)
    plt.close(fig)
    return path


def alphabet_accuracy(records: list[dict]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Accuracy (%) per method (rows, with preset) and test alphabet (columns, then ``overall``) over
    the store's ``omniglot20`` runs that keep trial identities (all seeds and draws pooled), and the
    95% half-widths over each cell's trial sets. Runs that chose the same support on every trial
    (two ways of scoring that happen to agree) are one row, named ``A = B``."""
    from fewshot_bench.pictures.failures import trial_table
    from fewshot_bench.stats import set_interval
    from fewshot_bench.tables.store import latest_per_seed

    means, halves, names = {}, {}, {}  # names: the runs' choices -> the row they are
    for (method, preset, protocol), runs in latest_per_seed(records).items():
        runs = [r for r in runs if r["draws"] and r["draws"][0].get("sets")]
        if protocol != "omniglot20" or not runs:
            continue
        table = pd.concat([trial_table(r).assign(run=r["run_id"]) for r in runs])
        table["set"] = table["run"] + "/" + table["trial_seed"].astype(str) + "/" + table["group"]
        name = method + ("" if preset == "-" else f" ({preset})")
        choices = tuple(sorted(zip(table["trial_seed"], table["query"], table["chosen_support"])))
        if choices in names:  # identical answers: one row under both names
            merged = f"{names[choices]} = {name}"
            means[merged], halves[merged] = means.pop(names[choices]), halves.pop(names[choices])
            names[choices] = merged
            continue
        names[choices] = name
        cells = {a: set_interval(part["correct"], part["set"]) for a, part in table.groupby("alphabet")}
        cells["overall"] = set_interval(table["correct"], table["set"])
        means[name] = {a: 100 * m for a, (m, _) in cells.items()}
        halves[name] = {a: 100 * h for a, (_, h) in cells.items()}
    return pd.DataFrame(means).T.sort_index(), pd.DataFrame(halves).T.sort_index()


def heatmap(records: list[dict], path: Path) -> Path:
    plt = pyplot()
    grid, halves = alphabet_accuracy(records)
    if grid.empty:
        raise UserError("no omniglot20 run keeps trial identities: run `bench run ... --protocol omniglot20`")
    alphabets = grid.drop(columns="overall")
    grid = grid[list(alphabets.mean().sort_values().index) + ["overall"]]  # hardest alphabets first, then all
    halves = halves[grid.columns]
    fig, ax = plt.subplots(figsize=(2.6 + 0.8 * grid.shape[1], 2.4 + 0.5 * grid.shape[0]))
    image = ax.imshow(grid.to_numpy(), cmap="viridis", vmin=0, vmax=100, aspect="auto")
    fig.colorbar(image, ax=ax, label="accuracy (%)", fraction=0.04, pad=0.02)
    ax.axvline(grid.shape[1] - 1.5, color="white", linewidth=3)  # the overall column apart
    ax.set_xticks(range(grid.shape[1]), list(grid.columns), rotation=40, ha="right", fontsize=8)
    ax.set_yticks(range(grid.shape[0]), grid.index, fontsize=8)
    for (i, j), value in np.ndenumerate(grid.to_numpy()):
        if not np.isnan(value):
            ax.text(j, i, f"{value:.0f}\n±{halves.iat[i, j]:.0f}", ha="center", va="center", fontsize=6.5,
                    linespacing=0.9, color="white" if value < 60 else "black")
    ax.set_title("omniglot20 accuracy (%) by test alphabet, hardest first, ± 95% CI over trial sets; all draws pooled",
                 fontsize=9)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=DPI)
    plt.close(fig)
    return path
