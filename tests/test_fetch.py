import hashlib
import os
import stat
import http.server
import threading
from functools import partial

import pytest

from fewshot_bench.data import datasets as data, fetch
from fewshot_bench.cli.main import main
from fewshot_bench.errors import UserError


@pytest.fixture
def server(tmp_path):
    """A local HTTP server on 127.0.0.1 serving tmp_path/served."""
    served = tmp_path / "served"
    served.mkdir()
    handler = partial(http.server.SimpleHTTPRequestHandler, directory=str(served))
    handler.log_message = lambda *a: None
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield served, f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()


def small_remote(content: bytes) -> data.RemoteFile:
    return data.RemoteFile("omniglot", "omniglot/small.bin", ("unused",), hashlib.md5(content).hexdigest())


def test_download_checks_md5_and_lands_atomically(server, tmp_path):
    served, url = server
    (served / "omniglot").mkdir()
    (served / "omniglot/small.bin").write_bytes(b"abc" * 1000)
    path = fetch.download(small_remote(b"abc" * 1000), tmp_path / "root", base_url=url)
    assert path.read_bytes() == b"abc" * 1000
    assert [p.name for p in path.parent.iterdir()] == ["small.bin"]  # no partial files left


def test_download_with_wrong_md5_is_refused(server, tmp_path):
    served, url = server
    (served / "omniglot").mkdir()
    (served / "omniglot/small.bin").write_bytes(b"tampered")
    with pytest.raises(UserError, match="MD5"):
        fetch.download(small_remote(b"original"), tmp_path / "root", base_url=url)
    assert not (tmp_path / "root/omniglot/small.bin").exists()


def test_download_with_wrong_sha256_is_refused(server, tmp_path):
    served, url = server
    (served / "omniglot").mkdir()
    (served / "omniglot/small.bin").write_bytes(b"abc")
    remote = data.RemoteFile("omniglot", "omniglot/small.bin", ("unused",), hashlib.md5(b"abc").hexdigest(), "0" * 64)
    with pytest.raises(UserError, match="SHA-256"):
        fetch.download(remote, tmp_path / "root", base_url=url)
    assert not (tmp_path / "root/omniglot/small.bin").exists()


def test_downloads_get_the_mode_a_plain_write_would(server, tmp_path):
    served, url = server
    (served / "omniglot").mkdir()
    (served / "omniglot/small.bin").write_bytes(b"abc")
    old = os.umask(0o022)
    try:
        path = fetch.download(small_remote(b"abc"), tmp_path / "root", base_url=url)
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == 0o644


def test_unreachable_source_is_one_clear_error(tmp_path):
    remote = data.RemoteFile("mnist", "mnist/x.gz", ("http://127.0.0.1:9/x.gz",), "0" * 32)
    with pytest.raises(UserError, match=r"could not download mnist/x.gz .*download it by hand"):
        fetch.download(remote, tmp_path, timeout=2)


def test_bench_data_fetch_downloads_missing_files_from_a_mirror(server, tmp_path, monkeypatch, capsys):
    served, url = server
    files = {}
    for remote in data.REMOTE_FILES:
        content = remote.name.encode() * 10
        (served / remote.name).parent.mkdir(parents=True, exist_ok=True)
        (served / remote.name).write_bytes(content)
        files[remote.name] = content
    fake = tuple(data.RemoteFile(r.dataset, r.name, r.urls, hashlib.md5(files[r.name]).hexdigest())
                 for r in data.REMOTE_FILES)
    monkeypatch.setattr(fetch, "REMOTE_FILES", fake)
    root = tmp_path / "root"
    code = main(["data", "fetch", "--data-root", str(root), "--base-url", url])
    for name, content in files.items():
        assert (root / name).read_bytes() == content
    # the served bytes are not real datasets: verification then fails with a clear line
    assert code == 2
    assert "run `bench data fetch" in capsys.readouterr().err


def test_official_sources_are_the_documented_ones():
    urls = {r.name: r.urls[0] for r in data.REMOTE_FILES}
    assert urls["omniglot/images_background.zip"].endswith("brendenlake/omniglot/master/python/images_background.zip")
    md5 = {r.name: r.md5 for r in data.REMOTE_FILES}
    assert md5["omniglot/images_background.zip"] == "68d2efa1b9178cc56df9314c21c6e718"
    assert md5["omniglot/images_evaluation.zip"] == "6b91aef0f799c5bb55b94e3f2daec811"
    runs = next(r for r in data.REMOTE_FILES if r.name == "omniglot/all_runs.zip")
    assert runs.urls[0].endswith("brendenlake/omniglot/master/python/one-shot-classification/all_runs.zip")
    assert runs.sha256 == "437c1eeab0af8484112e1b4cc0f3d541ec727f7c47b9b202da738af9dfd6c325"


def test_the_vinyals_split_comes_from_snells_repository_with_checksums(data_root):
    from fewshot_bench.data.datasets import file_digest

    split = [r for r in data.REMOTE_FILES if r.name.startswith("omniglot/vinyals_split/")]
    assert sorted(r.name.rsplit("/", 1)[1] for r in split) == ["test.txt", "train.txt", "trainval.txt", "val.txt"]
    for remote in split:
        assert remote.urls[0].startswith("https://raw.githubusercontent.com/jakesnell/prototypical-networks/")
        assert file_digest(data_root / remote.name) == remote.sha256
        assert file_digest(data_root / remote.name, "md5") == remote.md5
