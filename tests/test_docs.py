"""The documentation site builds strictly, and its reference pages list what the registries hold."""
import dataclasses
import html
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_the_readme_is_a_short_front_door():
    readme = (ROOT / "README.md").read_text()
    assert len(readme.splitlines()) <= 160
    # its set-up and test commands are the ones .ci/run runs, as written
    ci = (ROOT / ".ci" / "run").read_text()
    setup = re.search(r"## Set up\n\n```bash\n(.*?)```", readme, re.S).group(1).splitlines()
    install, first_run = setup
    assert install.replace("pip install", "pip install -q") in ci
    assert first_run in ci
    assert "python -m pytest -q" in readme and "\npython -m pytest -q\n" in ci
    # every local link points at a file that exists
    for target in re.findall(r"\]\(([^)#]+)\)", readme):
        if not target.startswith("http"):
            assert (ROOT / target).exists(), target


def test_the_readme_plugin_example_runs(tmp_path, data_root):
    from fewshot_bench.cli.main import main

    code = re.search(r"```python\n(.*?)```", (ROOT / "README.md").read_text(), re.S).group(1)
    plugin = tmp_path / "cosine_pixels_readme.py"
    plugin.write_text(code.replace('"cosine_pixels"', '"cosine_pixels_readme"'))
    assert main(["run", "--plugin", str(plugin), "--method", "cosine_pixels_readme", "--protocol", "lake_runs",
                 "--no-progress", "--store", str(tmp_path / "s")]) == 0


def test_the_site_builds_strictly_and_lists_every_method_and_protocol(tmp_path, monkeypatch):
    pytest.importorskip("mkdocs")
    pytest.importorskip("material")
    pytest.importorskip("mkdocstrings")
    from mkdocs.commands.build import build
    from mkdocs.config import load_config

    from fewshot_bench.api import METHODS, PROTOCOLS, Method
    from fewshot_bench.config import require

    @dataclasses.dataclass
    class DocsPluginConfig:
        sharpness: float = 0.5

        def check(self):
            require(self.sharpness > 0, "sharpness must be > 0")

    class DocsPlugin(Method):
        summary = "a method a plugin registered, for the docs test"
        Config = DocsPluginConfig
        presets = {"sharp": {"sharpness": 2.0}}
        default_preset = "sharp"

    METHODS.names()  # built-ins loaded, then registered into a copy the test undoes
    monkeypatch.setattr(METHODS, "_entries", dict(METHODS._entries))
    METHODS.register("docs_plugin_method")(DocsPlugin)
    monkeypatch.chdir(ROOT)
    monkeypatch.setenv("NO_MKDOCS_2_WARNING", "1")
    config = load_config(str(ROOT / "mkdocs.yml"), site_dir=str(tmp_path / "site"), strict=True)
    build(config)  # strict: a broken link, a missing page or a bad docstring reference aborts
    methods = html.unescape((tmp_path / "site" / "methods" / "index.html").read_text())
    for name in METHODS.names():
        assert f"{name}</code>" in methods, name
    assert "a method a plugin registered" in methods and "sharpness" in methods and "sharp" in methods
    for option in ("adam_lr", "budget_gflop", "momentum_ramp_epochs", "fce_steps", "inner_lr"):
        assert f"{option}</code>" in methods, option
    protocols = html.unescape((tmp_path / "site" / "protocols" / "index.html").read_text())
    for name in PROTOCOLS.names():
        assert f"{name}</code>" in protocols, name
    for option in ("train_split", "sets_per_alphabet", "threshold_pairs", "split_files"):
        assert f"{option}</code>" in protocols, option
    api = (tmp_path / "site" / "api" / "index.html").read_text()
    assert "score_indexed" in api and "check_background" in api and "tuning_sets" in api
