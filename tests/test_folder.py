"""Your own images as a benchmark: the folder protocol, its loader and its errors."""
import json
import subprocess
import sys
import zipfile

import numpy as np
import pytest
from PIL import Image

from fewshot_bench.api import PROTOCOLS
from fewshot_bench.data.folders import describe, load_folder, split_classes
from fewshot_bench.errors import UserError
from fewshot_bench.experiments.runner import RunSpec, run
from helpers import glyph


def colour_folder(root, classes=8, images=6, groups=None):
    """Random colour images of several sizes: root/class/img.jpg (or root/group/class/ with groups)."""
    rng = np.random.default_rng(0)
    for c in range(classes):
        folder = root / (f"group{c % groups}" if groups else "") / f"class{c:02d}"
        folder.mkdir(parents=True)
        base = rng.integers(0, 256, 3)  # each class its own colour, so that a method can learn it
        for k in range(images):
            px = np.clip(base + rng.normal(0, 30, (30 + c, 40, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(px).save(folder / f"img{k}.png")
    return root


def grey_folder(root, classes=6, images=5):
    for c in range(classes):
        (root / f"c{c}").mkdir(parents=True)
        for k in range(images):
            Image.fromarray(((1 - glyph(100 * c + k, 48)) * 255).astype(np.uint8)).save(root / f"c{c}" / f"{k}.png")
    return root


@pytest.fixture(autouse=True)
def _own_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("FEWSHOT_BENCH_CACHE", str(tmp_path / "cache"))


def folder_run(root, method="pixel_1nn", preset=None, store=None, **options):
    options = {"root": str(root), "episodes": 20, **options}
    return run(RunSpec(method, "folder", preset, {}, options, 0, None, None, store))


def test_a_learned_method_runs_end_to_end_on_a_colour_folder(tmp_path):
    root = colour_folder(tmp_path / "colour", classes=10)
    record = folder_run(root, "protonet", "tiny", tmp_path / "ckpt", way=2, channels=3)
    # each class has its own colour: 2-way episodes are easy (chance 0.5)
    assert record["n_trials"] == 40 and record["accuracy"] >= 0.8
    split = record["protocol_data"]["split"]
    assert sum(len(v) for v in split.values()) == 10 and not set(split["train"]) & set(split["test"])
    images = load_folder(root, 84, 3)
    assert images.images.shape == (60, 3, 84, 84) and images.images.dtype == np.uint8


def test_grey_ink_on_white_is_inverted_to_the_imageset_convention(tmp_path):
    images = load_folder(grey_folder(tmp_path / "grey"), 48, 1)
    assert images.images.shape == (30, 48, 48) and images.images.mean() < 60  # background 0, strokes bright
    assert load_folder(tmp_path / "grey", 48, 1, invert="no").images.mean() > 190


def test_split_is_seeded_disjoint_and_recorded(tmp_path):
    keys = [f"c{i}" for i in range(20)]
    a, b = split_classes(keys, (0.6, 0.2, 0.2), 0), split_classes(keys, (0.6, 0.2, 0.2), 1)
    assert a == split_classes(keys, (0.6, 0.2, 0.2), 0) and a != b
    assert [len(a[p]) for p in ("train", "val", "test")] == [12, 4, 4]
    assert sorted(sum(a.values(), [])) == sorted(keys)


def test_no_val_or_test_class_reaches_training(tmp_path):
    root = grey_folder(tmp_path / "grey", classes=10)
    protocol = PROTOCOLS.get("folder")(root=str(root))
    protocol.check_background(protocol.background())
    leaked = protocol.part("test")
    with pytest.raises(RuntimeError, match="held-out classes"):
        protocol.check_background(leaked)


def test_within_group_episodes_take_their_classes_from_one_group(tmp_path):
    root = colour_folder(tmp_path / "grouped", classes=24, groups=2)
    protocol = PROTOCOLS.get("folder")(root=str(root), way=3, within_group=True, split=(0.5, 0.0, 0.5),
                                       channels=3, episodes=10)
    for ts in protocol.trial_sets(0):
        assert len({i.split("/")[0] for i in ts.support_ids}) == 1


def test_split_files_name_classes_and_rotations(tmp_path):
    root = grey_folder(tmp_path / "grey", classes=4)
    files = tmp_path / "split"
    files.mkdir()
    (files / "train.txt").write_text("c0\nc1/rot090\n")
    (files / "test.txt").write_text("c2\nc2/rot180\nc3\n")
    protocol = PROTOCOLS.get("folder")(root=str(root), split_files=str(files), way=3, image_size=48)
    test = protocol.part("test")
    assert test.meta["label"].nunique() == 3
    turned = test.images[test.meta["rotation"].to_numpy() == 180]
    np.testing.assert_array_equal(turned, np.rot90(test.images[:5], 2, axes=(1, 2)))
    assert protocol.provenance()["split"]["train"] == ["c0", "c1/rot090"]


@pytest.mark.parametrize("make, message", [
    (lambda r: (r / "c0" / "notes.txt").write_text("x"), "c0: 1 file(s) that are not images, e.g. notes.txt"),
    (lambda r: [p.unlink() for p in (r / "c1").iterdir()], "c1: no images"),
    (lambda r: (r / "c2" / "0.png").write_bytes(b"not a png"), "c2/0.png is not an image that can be read"),
    (lambda r: (r / "group" / "class").mkdir(parents=True), "mixes layouts"),
])
def test_a_bad_folder_is_one_error_naming_what_is_wrong(tmp_path, make, message):
    root = grey_folder(tmp_path / "grey")
    make(root)
    with pytest.raises(UserError, match=message.replace(".", r"\.").replace("(", r"\(").replace(")", r"\)")):
        folder_run(root)


def test_episodes_that_need_more_than_the_test_part_holds_are_errors(tmp_path):
    root = grey_folder(tmp_path / "grey", classes=10, images=3)
    with pytest.raises(UserError, match="the test split holds 2 classes; way=5 needs at least 5"):
        folder_run(root)
    with pytest.raises(UserError, match="has 3 images; episodes need shot \\+ queries = 4"):
        folder_run(root, way=2, shot=2, queries=2)
    with pytest.raises(UserError, match="no folder at"):
        folder_run(tmp_path / "missing")
    with pytest.raises(UserError, match="needs root"):
        PROTOCOLS.get("folder").make_config({})


def test_bench_data_check_describes_a_folder_and_its_problems(tmp_path):
    root = colour_folder(tmp_path / "colour", classes=10)
    info = describe(root)
    assert info["classes"] == 10 and info["images"] == 60 and info["modes"] == {"RGB": 60}
    assert info["split"] == {"train": 6, "val": 2, "test": 2} and info["problems"] == [
        "the test part holds 2 classes, fewer than way = 5"]
    out = subprocess.run([sys.executable, "-m", "fewshot_bench.cli", "data", "check", str(root), "--way", "2"],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and "RGB (60)" in out.stdout and "ready: bench run" in out.stdout
    (root / "class00" / "x.csv").write_text("a")
    out = subprocess.run([sys.executable, "-m", "fewshot_bench.cli", "data", "check", str(root)],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert "problem: class00: 1 file(s) that are not images" in out.stdout


def test_bench_run_writes_the_split_beside_the_record(tmp_path):
    root = colour_folder(tmp_path / "colour", classes=10)
    out = subprocess.run([sys.executable, "-m", "fewshot_bench.cli", "run", "--method", "pixel_1nn", "--protocol",
                          "folder", "--protocol-set", f"root={root}", "--protocol-set", "way=2", "--protocol-set",
                          "channels=3", "--protocol-set", "episodes=10", "--store", str(tmp_path / "store"),
                          "--no-progress"], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    (split,) = (tmp_path / "store" / "splits").glob("*.json")
    assert len(json.loads(split.read_text())["test"]) == 2


def test_omniglot_written_as_a_folder_scores_as_the_vinyals_protocol(data_root, tmp_path):
    """The same classes (a Vinyals-format split with rotations), the same seed: the same episodes,
    so the same per-trial answers for a non-learning method."""
    test = [("Tengwar", c) for c in ("character01", "character02", "character03")]
    train = [("Latin", c) for c in ("character01", "character02", "character03")]
    folder, own_root = tmp_path / "omniglot_folder", tmp_path / "root"
    with zipfile.ZipFile(data_root / "omniglot" / "images_evaluation.zip") as ev, \
            zipfile.ZipFile(data_root / "omniglot" / "images_background.zip") as bg:
        for zf, (alphabet, character) in [(ev, t) for t in test] + [(bg, t) for t in train]:
            for name in zf.namelist():
                parts = name.split("/")
                if len(parts) == 4 and parts[1:3] == [alphabet, character] and name.endswith(".png"):
                    (folder / alphabet / character).mkdir(parents=True, exist_ok=True)
                    (folder / alphabet / character / parts[3]).write_bytes(zf.read(name))
    (own_root / "omniglot" / "vinyals_split").mkdir(parents=True)
    for zip_name in ("images_background.zip", "images_evaluation.zip"):
        (own_root / "omniglot" / zip_name).symlink_to(data_root / "omniglot" / zip_name)
    lines = {"test": [f"{a}/{c}/rot{d:03d}" for a, c in test for d in (0, 90, 180, 270)],
             "train": [f"{a}/{c}/rot{d:03d}" for a, c in train[:2] for d in (0, 90)],
             "val": [f"{a}/{c}/rot000" for a, c in train[2:]]}
    lines["trainval"] = lines["train"] + lines["val"]
    for part, names in lines.items():
        (own_root / "omniglot" / "vinyals_split" / f"{part}.txt").write_text("\n".join(names) + "\n")
        (tmp_path / f"{part}.txt").write_text("\n".join(names) + "\n")
    shape = {"way": 5, "shot": 1, "queries": 2, "episodes": 30}
    builtin = run(RunSpec("pixel_1nn", "vinyals", None, {}, {**shape, "train_split": "trainval"}, 0, [0, 1],
                          own_root, None))
    mine = run(RunSpec("pixel_1nn", "folder", None, {}, {**shape, "root": str(folder), "image_size": 28,
                                                         "split_files": str(tmp_path)}, 0, [0, 1], None, None))
    assert mine["accuracy"] == builtin["accuracy"] and mine["n_trials"] == builtin["n_trials"] == 600
    for a, b in zip(mine["draws"], builtin["draws"]):
        assert a["correct"] == b["correct"]
