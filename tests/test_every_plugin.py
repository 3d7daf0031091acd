"""Every registered method and protocol, smoke-tested on synthetic images (no dataset needed), as
timm's suite runs every registered model: a new plugin is tested for free."""
import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from fewshot_bench.api import METHODS, PROTOCOLS, TrialSet
from fewshot_bench.data.splits import TEST_ALPHABETS, VALIDATION_ALPHABETS
from fewshot_bench.experiments.runner import RunSpec, run
from fewshot_bench.imageset import ImageSet
from helpers import glyph, idx_gz, lake_runs_folder, omniglot_zip

SIZE = 48  # synthetic images: small, so that every method (MHD, the affine grid) stays fast


def synthetic_background(alphabets: int = 3, characters: int = 8, drawers: int = 20) -> ImageSet:
    """Omniglot-shaped background data: stroke images with alphabet, character, drawer and label."""
    images, rows = [], []
    for a in range(alphabets):
        for c in range(characters):
            for d in range(1, drawers + 1):
                images.append(glyph(1000 * a + 20 * c + d, SIZE))
                rows.append({"split": "background", "alphabet": f"Synthetic{a}", "character": f"character{c + 1:02d}",
                             "drawer": d, "label": a * characters + c})
    return ImageSet(np.stack(images), pd.DataFrame(rows))


def trial_set(way: int = 5, shot: int = 1) -> TrialSet:
    """``way`` classes of ``shot`` support images each and one query per class, unseen characters."""
    support = np.stack([glyph(90_000 + 100 * c + k, SIZE) for k in range(shot) for c in range(way)])
    queries = np.stack([glyph(90_000 + 100 * c + 50, SIZE) for c in range(way)])
    support_class = np.tile(np.arange(way), shot) if shot > 1 else None
    return TrialSet(queries, support, np.arange(way), "synthetic#1", support_class=support_class)


def smoke_preset(cls) -> str | None:
    """The cheapest preset a method has: ``tiny`` where it has one."""
    return "tiny" if "tiny" in cls.presets else cls.default_preset


@pytest.fixture(scope="module")
def background():
    return synthetic_background()


@pytest.mark.parametrize("name", METHODS.names())
def test_every_method_fits_and_scores_synthetic_trials(name, background, tmp_path):
    cls = METHODS.get(name)
    preset = smoke_preset(cls)
    method = cls(cls.make_config(preset), seed=0, preset=preset, work_dir=tmp_path)
    method.fit(background)
    for shot in (1, 2):
        ts = trial_set(way=5, shot=shot)
        sets = [(method.prepare(ts.queries), method.prepare(ts.support),
                 *([ts.support_class] if ts.support_class is not None else []))]
        scores = method.score_sets(sets)[0]
        assert scores.shape == (5, 5 * shot), f"{name}: scores {tuple(scores.shape)} for a 5-way {shot}-shot set"
        assert torch.isfinite(scores).all(), f"{name}: non-finite scores"


@pytest.fixture(scope="module")
def synthetic_root(tmp_path_factory):
    """A data root in the official layouts with synthetic images: Omniglot (2 background alphabets,
    the 20 evaluation alphabets, 5 characters each), MNIST, Lake's runs and a Vinyals split."""
    root = tmp_path_factory.mktemp("synthetic_data")
    (root / "omniglot" / "vinyals_split").mkdir(parents=True)
    background = {"Synthetic_A": 5, "Synthetic_B": 5}
    evaluation = {name: 5 for name in VALIDATION_ALPHABETS + TEST_ALPHABETS}
    omniglot_zip(root / "omniglot/images_background.zip", "images_background", background, size=SIZE)
    omniglot_zip(root / "omniglot/images_evaluation.zip", "images_evaluation", evaluation, size=SIZE)
    digits = np.stack([glyph(7000 + k, SIZE)[10:38, 10:38] * 255 for k in range(60)])  # 28x28, as MNIST
    (root / "mnist").mkdir()
    idx_gz(root / "mnist/t10k-images-idx3-ubyte.gz", digits)
    idx_gz(root / "mnist/t10k-labels-idx1-ubyte.gz", np.arange(60) % 10)
    lake_runs_folder(root / "lake_runs")
    for c in range(10):  # a user's folder of class folders
        (root / "my_images" / f"class{c}").mkdir(parents=True)
        for k in range(4):
            Image.fromarray(glyph(5000 + 10 * c + k, SIZE) * 255).save(root / "my_images" / f"class{c}" / f"{k}.png")
    classes = {"train": [f"Synthetic_A/character0{c}/rot{r:03d}" for c in range(1, 6) for r in (0, 90)],
               "val": [f"Synthetic_B/character0{c}/rot{r:03d}" for c in range(1, 6) for r in (0, 90, 180, 270)],
               "test": [f"{a}/character0{c}/rot000" for a in TEST_ALPHABETS[:2] for c in range(1, 6)]}
    classes["trainval"] = classes["train"] + classes["val"]
    for part, lines in classes.items():
        (root / "omniglot/vinyals_split" / f"{part}.txt").write_text("\n".join(lines) + "\n")
    return root


# options that make each built-in protocol's trials fit the synthetic data; a protocol not named
# here runs with its defaults
SMOKE_OPTIONS = {"omniglot20": {"way": 5}, "episodes": {"way": 3, "episodes": 4},
                 "verification": {"pairs": 40, "threshold_pairs": 20}, "mnist10": {"trials": 10},
                 "vinyals": {"way": 3, "episodes": 4}, "lake_runs": {"runs": "{root}/lake_runs"},
                 "folder": {"root": "{root}/my_images", "way": 2, "episodes": 4}}


@pytest.mark.parametrize("name", PROTOCOLS.names())
def test_every_protocol_evaluates_a_method_on_synthetic_data(name, synthetic_root, tmp_path):
    options = {k: v.format(root=synthetic_root) if isinstance(v, str) else v
               for k, v in SMOKE_OPTIONS.get(name, {}).items()}
    record = run(RunSpec("pixel_1nn", name, None, {"input_size": "28"}, options, 0, None, synthetic_root,
                         tmp_path / "checkpoints"))
    cls = PROTOCOLS.get(name)
    assert cls.summary and record["protocol_version"] == cls.version
    assert record["n_trials"] > 0 and 0 <= record["accuracy"] <= 1 and record["ci95"] >= 0
    if name == "lake_runs":  # the synthetic runs' queries copy their supports: nearest pixels is exact
        assert record["accuracy"] == 1.0
    assert record["ci_unit"] == cls.ci_unit
    env = record["environment"]  # where and with what code the run was measured
    assert env["cpu_isa"] == torch.backends.cpu.get_cpu_capability() and env["git_dirty"] in (True, False, None)


def test_episodes_wider_than_the_background_are_one_user_error(tmp_path):
    from fewshot_bench.errors import UserError

    cls = METHODS.get("maml")  # 20-way episodes across alphabets
    method = cls(cls.make_config("tiny", {"way": "20"}), seed=0, preset="tiny", work_dir=tmp_path)
    with pytest.raises(UserError, match="way=20 needs 20 background classes; the background has 12"):
        method.fit(synthetic_background(alphabets=2, characters=6))


def test_a_new_loss_is_an_objective_class_and_a_method_naming_its_family(background, monkeypatch, tmp_path):
    """What the README's 'A learned method with a new loss' says: no core file changes."""
    import torch.nn.functional as F

    from fewshot_bench.learning import objectives
    from fewshot_bench.learning.method import EpisodicMethod
    from fewshot_bench.learning.networks import CONV4

    class Hinge(objectives.Episodes):  # a multiclass hinge on prototype scores
        def loss(self, x, shapes):
            loss = 0.0
            for grid in objectives.grids(self.method.train_embed(x), shapes):
                support, queries = grid[0], grid[1:].reshape(-1, grid.shape[-1])
                scores = self.method.model_.logits(queries, support)
                target = torch.arange(grid.shape[1]).repeat(grid.shape[0] - 1)
                loss = loss + F.multi_margin_loss(scores, target)
            return loss / len(shapes)

    monkeypatch.setitem(objectives.OBJECTIVES, "hinge", Hinge)
    Hinge.name = "hinge"

    class HingeNet(EpisodicMethod):
        name = "hinge_net"
        presets = {"tiny": {**CONV4, "input_size": 16, "channels": (8, 8), "kernels": (3, 3), "objective": "hinge",
                            "metric": "euclidean", "way": 5, "drawers_per_character": 3, "alphabets_per_batch": 2,
                            "steps_per_epoch": 3, "epochs": 2, "patience": 2}}

    method = HingeNet(HingeNet.make_config("tiny"), preset="tiny", work_dir=tmp_path).fit(background)
    assert [h["epoch"] for h in method.history_] == [0, 1] and all(np.isfinite(h["loss"]) for h in method.history_)
    ts = trial_set()
    assert method.score(method.prepare(ts.queries), method.prepare(ts.support)).shape == (5, 5)
