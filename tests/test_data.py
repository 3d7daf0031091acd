import os
import stat
import time

import numpy as np
import pytest

from fewshot_bench.data import datasets as data
from fewshot_bench.errors import UserError
from helpers import glyph, idx_gz, omniglot_zip


@pytest.fixture
def tiny_root(tmp_path, monkeypatch):
    monkeypatch.setenv("FEWSHOT_BENCH_CACHE", str(tmp_path / "cache"))
    root = tmp_path / "data"
    (root / "omniglot").mkdir(parents=True)
    omniglot_zip(root / "omniglot/images_background.zip", "images_background", {"Latin": 3, "Greek": 2}, drawers=3)
    omniglot_zip(root / "omniglot/images_evaluation.zip", "images_evaluation", {"Tibetan": 2}, drawers=3)
    return root


def test_omniglot_zip_is_read_with_split_alphabet_character_drawer(tiny_root):
    images = data.load_omniglot(tiny_root)
    assert images.images.shape == (3 * 3 + 2 * 3 + 2 * 3, 105, 105)
    assert set(images.meta["split"]) == {"background", "evaluation"}
    assert sorted(images.meta["drawer"].unique()) == [1, 2, 3]
    row = images.meta.index[(images.meta.alphabet == "Latin") & (images.meta.character == "character02")
                            & (images.meta.drawer == 3)][0]
    # the pixels are the glyph written for that file (ink = 1)
    np.testing.assert_array_equal(images.images[row], glyph(0 * 1000 + 2 * 20 + 3))
    assert images.meta["label"].nunique() == 7


def test_decoded_cache_is_reused_and_identical(tiny_root, tmp_path):
    first = data.load_omniglot(tiny_root)
    cached = list((tmp_path / "cache" / "decoded").glob("*.npz"))
    assert len(cached) == 2
    second = data.load_omniglot(tiny_root)
    np.testing.assert_array_equal(first.images, second.images)
    assert first.meta.equals(second.meta)


def test_corrupt_zip_is_a_user_error(tiny_root):
    path = tiny_root / "omniglot/images_background.zip"
    path.write_bytes(path.read_bytes()[:500])
    with pytest.raises(UserError, match="not a readable zip"):
        data.load_omniglot(tiny_root)


def test_missing_data_says_where_it_looked_and_how_to_fetch(tmp_path):
    with pytest.raises(UserError, match=r"missing .*images_background.zip; run `bench data fetch"):
        data.load_omniglot(tmp_path)


def test_data_root_order_flag_then_env_then_user_cache(monkeypatch, tmp_path):
    monkeypatch.setenv("FEWSHOT_BENCH_DATA", str(tmp_path / "env"))
    assert data.data_root(tmp_path / "flag") == tmp_path / "flag"
    assert data.data_root() == tmp_path / "env"
    monkeypatch.delenv("FEWSHOT_BENCH_DATA")
    monkeypatch.setenv("FEWSHOT_BENCH_CACHE", str(tmp_path / "cache"))
    assert data.data_root() == tmp_path / "cache" / "data"


def test_mnist_idx_gz_is_read(tmp_path):
    (tmp_path / "mnist").mkdir()
    imgs = np.random.default_rng(0).integers(0, 256, size=(10, 28, 28))
    idx_gz(tmp_path / "mnist/t10k-images-idx3-ubyte.gz", imgs)
    idx_gz(tmp_path / "mnist/t10k-labels-idx1-ubyte.gz", np.arange(10))
    mnist = data.load_mnist(tmp_path)
    np.testing.assert_array_equal(mnist.images, imgs)
    assert list(mnist.meta["label"]) == list(range(10))


def test_truncated_idx_is_a_user_error(tmp_path):
    (tmp_path / "mnist").mkdir()
    (tmp_path / "mnist/t10k-images-idx3-ubyte.gz").write_bytes(b"\x1f\x8b junk")
    idx_gz(tmp_path / "mnist/t10k-labels-idx1-ubyte.gz", np.arange(10))
    with pytest.raises(UserError, match="not a valid idx file"):
        data.load_mnist(tmp_path)


def test_real_omniglot_and_mnist_match_official_content(data_root):
    omniglot = data.load_omniglot(data_root)
    assert data.verify_omniglot(omniglot) == []
    assert data.verify_mnist(data.load_mnist(data_root)) == []


def test_warm_load_is_fast(data_root):
    data.load_omniglot(data_root)  # makes sure the cache exists
    start = time.perf_counter()
    data.load_omniglot(data_root)
    assert time.perf_counter() - start < 3.0  # measured ~0.2 s; generous for a loaded CI box


def test_small_background_sets_load(data_root):
    small = data.load_omniglot(data_root, parts=("background_small1", "background_small2"))
    assert small.meta.groupby("split")["alphabet"].nunique().to_dict() == {
        "background_small1": 5, "background_small2": 5}


@pytest.mark.parametrize("umask", [0o022, 0o002])
def test_atomic_writes_honour_the_umask_like_a_plain_write(tmp_path, umask):
    from fewshot_bench.records import write_atomic

    old = os.umask(umask)
    try:
        write_atomic(tmp_path / "record.json", "{}")
        (tmp_path / "plain.json").write_text("{}")
    finally:
        os.umask(old)
    mode = stat.S_IMODE((tmp_path / "record.json").stat().st_mode)
    assert mode == stat.S_IMODE((tmp_path / "plain.json").stat().st_mode) == 0o666 & ~umask


def test_bench_data_shows_and_verifies_lakes_runs(data_root, capsys):
    from fewshot_bench.cli.main import main

    assert main(["data", "--data-root", str(data_root)]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "lake runs" in out and "20 runs, 400 trials, SHA-256 as published" in out


def test_bench_data_flags_runs_that_are_not_lakes_file(data_root, tmp_path, capsys):
    import shutil
    import zipfile

    from fewshot_bench.cli.main import main
    from fewshot_bench.data.lake import load_runs, verify_runs_file

    root = tmp_path / "data"
    shutil.copytree(data_root / "mnist", root / "mnist")
    (root / "omniglot").mkdir()
    for name in ("images_background.zip", "images_evaluation.zip"):
        (root / "omniglot" / name).symlink_to(data_root / "omniglot" / name)
    with zipfile.ZipFile(data_root / "omniglot/all_runs.zip") as src, \
            zipfile.ZipFile(root / "omniglot/all_runs.zip", "w") as dst:  # same files, other bytes
        for info in src.infolist():
            if not info.filename.startswith("run20/"):
                dst.writestr(info.filename, src.read(info))
    assert main(["data", "--data-root", str(root)]) == 2
    assert "unexpected content" in capsys.readouterr().out
    path = root / "omniglot/all_runs.zip"
    problems = verify_runs_file(load_runs(path), path)
    assert problems[0] == "19 runs, expected 20" and "is not Lake's published all_runs.zip" in problems[1]
