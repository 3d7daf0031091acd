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
    install, data, first_run = setup
    assert install.replace("pip install", "pip install -q") in ci
    assert f"\n{data}\n{first_run}\n" in ci
    assert "python -m pytest -q" in readme and "\npython -m pytest -q\n" in ci
    # every local link points at a file that exists
    for target in re.findall(r"\]\(([^)#]+)\)", readme):
        if not target.startswith("http"):
            assert (ROOT / target).exists(), target


def python_blocks(text: str) -> list[str]:
    return re.findall(r"```python\n(.*?)```", text, re.S)


def test_the_readme_plugin_example_runs(tmp_path, data_root):
    from fewshot_bench.cli.main import main

    code = next(b for b in python_blocks((ROOT / "README.md").read_text()) if "METHODS.register" in b)
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
    for name in METHODS.names():  # the overview lists every method, linking its generated page
        assert f"{name}</code>" in methods and f'href="{name}/"' in methods, name
    assert "a method a plugin registered" in methods
    plugin = html.unescape((tmp_path / "site" / "methods" / "docs_plugin_method" / "index.html").read_text())
    assert "sharpness" in plugin and "<code>sharp</code>" in plugin and "sharpness=2</code>" in plugin
    pages = {name: html.unescape((tmp_path / "site" / "methods" / name / "index.html").read_text())
             for name in ("conv_siamese", "matching_net", "maml")}
    for name, option in (("conv_siamese", "adam_lr"), ("conv_siamese", "budget_gflop"),
                         ("conv_siamese", "momentum_ramp_epochs"), ("matching_net", "fce_steps"), ("maml", "inner_lr")):
        assert f"{option}</code>" in pages[name], option
    # a preset's floats are rounded for reading (the preset file keeps every digit), its figure linked
    assert "lr=0.000674,0.00224" in pages["conv_siamese"] and "0.0006744794572476493" not in pages["conv_siamese"]
    assert "88.5 ± 2.0 on Koch" in pages["conv_siamese"] and "table2/" in pages["conv_siamese"]
    protocols = html.unescape((tmp_path / "site" / "protocols" / "index.html").read_text())
    for name in PROTOCOLS.names():
        assert f"{name}</code>" in protocols, name
    for option in ("train_split", "sets_per_alphabet", "threshold_pairs", "split_files"):
        assert f"{option}</code>" in protocols, option
    api = (tmp_path / "site" / "api" / "index.html").read_text()
    assert "score_indexed" in api and "check_background" in api and "tuning_sets" in api


def test_no_two_source_files_build_to_one_page(monkeypatch):
    """docs/ and results/ (added by the hook) must not collide: a results/README.md beside a
    docs/results.md both built to /results/, and the guide vanished behind the file index."""
    pytest.importorskip("mkdocs")
    from mkdocs.config import load_config
    from mkdocs.structure.files import get_files

    monkeypatch.chdir(ROOT)
    monkeypatch.setenv("NO_MKDOCS_2_WARNING", "1")
    config = load_config(str(ROOT / "mkdocs.yml"))
    files = config.plugins.on_files(get_files(config), config=config)
    config = config.plugins.on_config(config)
    pages = [f for f in files if f.is_documentation_page()]
    destinations = [f.dest_uri for f in pages]
    clashes = {d for d in destinations if destinations.count(d) > 1}
    assert not clashes, {d: [f.src_uri for f in pages if f.dest_uri == d] for d in clashes}
    assert "results/index.html" in destinations and "tables/index.html" in destinations
    assert "methods/conv_siamese/index.html" in destinations  # a page per method, generated


def test_every_results_file_is_linked_from_the_results_page():
    readme = (ROOT / "results" / "README.md").read_text()
    linked = set(re.findall(r"\]\(([^)#]+)\)", readme))
    for path in (ROOT / "results").rglob("*"):
        relative = path.relative_to(ROOT / "results").as_posix()
        if path.is_file() and not relative.startswith("report/") and relative != "README.md":
            assert relative in linked, f"results/{relative} is on no page: link it from results/README.md"


# README commands the test does not run, each with why (every other command of the README runs, as pasted)
NOT_RUN = {
    r"^pip install": "the install: CI runs it",
    r"^export FEWSHOT_BENCH_DATA=": "the test gives the data's absolute path the same way",
    r"^python -m pytest": "the test suite itself",
    r"^mkdocs serve": "a server; test_the_site_builds_strictly builds the same site",
    r"^(nohup )?bench reproduce": "hours of training",
    r"^bench tune": "hours of training",
    r"^bench run .*--preset cpu": "a 10-25 minute training",
    r"--device cuda": "a GPU's hours (CI has no GPU; test_device_cuda_without_a_gpu_is_one_line covers the flag)",
    r"^bench compare pixel_1nn mhd .*--trial-seed 0-9": "about 2.5 minutes: MHD on ten draws",
    r"\bPATH\b": "a placeholder for the user's own folder",
}


def readme_commands() -> list[str]:
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", (ROOT / "README.md").read_text(), re.S):
        commands += [line.split("  #")[0].strip() for line in block.splitlines() if line.strip()]
    return commands


def test_every_readme_command_that_takes_under_a_minute_runs_as_pasted(data_root, tmp_path):
    """Set the data location once (the README's export), then every command as written, in order, in an
    empty folder (a fresh clone's working directory), each within two minutes."""
    import os
    import subprocess
    import time

    ran = []
    for command in readme_commands():
        skipped = [why for pattern, why in NOT_RUN.items() if re.search(pattern, command)]
        if skipped:
            continue
        start = time.perf_counter()
        out = subprocess.run(["bash", "-c", command], cwd=tmp_path, capture_output=True, text=True, timeout=300,
                             env={**os.environ, "FEWSHOT_BENCH_DATA": str(data_root)})
        assert out.returncode == 0, f"{command}: {out.stderr[-2000:]}"
        assert time.perf_counter() - start < 120, command
        ran.append(command.split()[:3])
    assert ["bench", "run", "--method"] in ran and ["bench", "list"] in ran and ["bench", "store", "unpack"] in ran


def test_the_readme_python_example_runs(data_root):
    import torch

    code = next(b for b in python_blocks((ROOT / "README.md").read_text()) if "import fewshot_bench as fb" in b)
    namespace = {"my_network": torch.nn.Sequential(torch.nn.AvgPool2d(4), torch.nn.Flatten())}
    exec(code, namespace)
    assert namespace["runs"]["method"].tolist() == ["pixel_1nn"] and namespace["mine"].record["n_trials"] == 4000
