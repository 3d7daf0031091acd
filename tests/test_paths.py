"""Everything that can be checked before work is checked before work: a bad output path or a protocol
that cannot run is one line and exit 2, before any data is scored or any network trained."""
import numpy as np
import pytest
from PIL import Image

from fewshot_bench.cli.main import main

TINY_RUN = ["run", "--method", "conv_siamese", "--preset", "tiny", "--protocol", "omniglot20", "--no-progress"]
TINY_TUNE = ["tune", "--method", "conv_siamese", "--preset", "tiny_koch", "--trials", "1", "--val-trials", "20"]

# (arguments before the bad path, the option taking it, whether it must be a folder)
WRITERS = [
    (TINY_RUN, "--store", True),
    (["sweep", "--method", "conv_siamese", "--preset", "tiny", "--protocol", "omniglot20", "--no-progress"],
     "--store", True),
    (["reproduce", "table3", "--stored"], "--store", True),
    (["reproduce", "table3", "--stored"], "--out", True),
    (["table"], "--out", True),
    (TINY_TUNE, "--store", True),
    (TINY_TUNE, "--out", True),
    (["report"], "--out", True),
    (["compare", "pixel_1nn", "mhd", "--protocol", "omniglot20"], "--gallery", False),
    (["show", "--method", "mhd", "--protocol", "omniglot20"], "--gallery", False),
    (["show", "--method", "mhd", "--protocol", "omniglot20"], "--curves", False),
    (["data", "fetch"], "--data-root", True),
]


def bad_paths(tmp_path, folder: bool):
    """A file where a folder is needed (or a folder where a file is), a parent that is a file, and
    a place nobody can write (not even root: /proc)."""
    afile = tmp_path / "a-file.txt"
    afile.write_text("not a folder")
    wrong_kind = afile if folder else tmp_path
    return [("is a file" if folder else "is a folder", wrong_kind), ("cannot write", afile / "below"),
            ("cannot write", "/proc/fewshot-bench-nowhere" + ("" if folder else "/x.png"))]


@pytest.mark.parametrize("args, option, folder", WRITERS, ids=[f"{a[0]} {o}" for a, o, _ in WRITERS])
def test_a_bad_output_path_is_one_line_before_any_work(args, option, folder, tmp_path, capsys, monkeypatch):
    from fewshot_bench.learning.trainer import TrainingLoop

    def no_training(*a, **k):
        raise AssertionError("trained before checking the output path")

    monkeypatch.setattr(TrainingLoop, "train", no_training)
    for message, path in bad_paths(tmp_path, folder):
        assert main([*args, option, str(path)]) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("error:") and option in err and str(path) in err and message in err, err
        assert len(err.splitlines()) == 1 or len(err) > 80, err  # one line (rich may fold a long one)


def test_a_store_that_is_a_file_keeps_a_training(tmp_path, capsys, monkeypatch):
    """The issue's case: --store naming a file used to fail after the whole evaluation."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "README.md").write_text("a file")
    assert main(["run", "--method", "pixel_1nn", "--protocol", "mnist10", "--store", "README.md"]) == 2
    assert "--store README.md is a file" in capsys.readouterr().err


def colour_folder(root, classes=15, images=6):
    rng = np.random.default_rng(0)
    for c in range(classes):
        (root / f"class{c:02d}").mkdir(parents=True)
        for i in range(images):
            Image.fromarray(rng.integers(0, 255, (20, 20, 3), dtype=np.uint8)).save(root / f"class{c:02d}" / f"{i}.png")
    return root


@pytest.mark.parametrize("options, message", [
    (["--protocol-set", "channels=3"], "the test split holds 3 classes; way=5 needs at least 5"),
    (["--protocol-set", "channels=3", "--protocol-set", "way=3", "--protocol-set", "shot=5",
      "--protocol-set", "queries=2"], "has 6 images; episodes need shot + queries = 7"),
])
def test_a_protocol_that_cannot_run_fails_before_training(options, message, tmp_path, capsys, monkeypatch):
    from fewshot_bench.learning.trainer import TrainingLoop

    monkeypatch.setattr(TrainingLoop, "train", lambda *a, **k: pytest.fail("trained a method the protocol cannot score"))
    root = colour_folder(tmp_path / "colour")
    assert main(["run", "--method", "protonet", "--preset", "tiny_episodes", "--protocol", "folder",
                 "--protocol-set", f"root={root}", *options, "--no-progress", "--store", str(tmp_path / "s")]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "s" / "checkpoints").exists()


def test_colour_images_for_a_grey_method_fail_before_anything_is_scored(tmp_path, capsys, monkeypatch):
    from fewshot_bench.api import METHODS

    monkeypatch.setattr(METHODS.get("mhd"), "fit", lambda *a, **k: pytest.fail("fitted a method of grey images"))
    root = colour_folder(tmp_path / "colour", classes=30)
    assert main(["run", "--method", "mhd", "--protocol", "folder", "--protocol-set", f"root={root}",
                 "--protocol-set", "channels=3", "--no-progress", "--store", str(tmp_path / "s")]) == 2
    assert "works on grey images only" in capsys.readouterr().err


def test_vinyals_episodes_wider_than_their_classes_fail_before_training(data_root, tmp_path, capsys, monkeypatch):
    from fewshot_bench.learning.trainer import TrainingLoop

    monkeypatch.setattr(TrainingLoop, "train", lambda *a, **k: pytest.fail("trained for episodes that cannot be drawn"))
    assert main(["run", "--method", "protonet", "--preset", "tiny", "--protocol", "vinyals", "--protocol-set",
                 "way=700", "--protocol-set", "test_split=val", "--no-progress", "--store", str(tmp_path / "s"),
                 "--data-root", str(data_root)]) == 2
    assert "way=700 needs that many classes; the val classes number 688" in capsys.readouterr().err
