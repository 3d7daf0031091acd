"""Records keep what pictures need; failure and comparison galleries pick the right trials in the
right order; the HTML report renders in a real browser with every image."""
import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from fewshot_bench.pictures import failures
from fewshot_bench.cli.main import main
from fewshot_bench.data.omniglot import omniglot
from fewshot_bench.records import load_records


def fake_record(correct, score_correct, score_chosen, run_id="r1", method="m"):
    """One draw, one set of three queries against three supports."""
    answers = [0, 1, 2]
    predictions = [a if c else (a + 1) % 3 for a, c in zip(answers, correct)]
    return {"run_id": run_id, "method": method, "preset": None, "protocol": "omniglot20", "draws": [{
        "trial_seed": 0, "correct": correct, "answers": answers, "predictions": predictions,
        "score_correct": score_correct, "score_chosen": score_chosen,
        "sets": [{"group": "Tibetan#1", "queries": ["Tibetan/character01/17", "Tibetan/character02/17",
                                                    "Tibetan/character03/17"],
                  "support": ["Tibetan/character01/18", "Tibetan/character02/18", "Tibetan/character03/18"]}]}]}


def test_a_trial_several_draws_got_wrong_is_one_panel_with_its_count():
    record = fake_record([0, 1, 0], [-5.0, -1.0, -3.0], [-4.0, -1.0, -0.5])
    record["draws"].append({**record["draws"][0], "trial_seed": 1})  # a second draw holding the same trials
    assert len(failures.failures(record)) == 4
    distinct = failures.distinct_failures(record)
    assert list(distinct["query"]) == ["Tibetan/character03/17", "Tibetan/character01/17"]
    assert list(distinct["draws"]) == [2, 2]


def test_the_comparison_gallery_shows_the_losers_choice_and_the_test(tmp_path, monkeypatch):
    from fewshot_bench.pictures import figures

    drawn = {}
    monkeypatch.setattr(figures, "gallery", lambda rows, path, title: drawn.update(rows=rows, title=title) or path)
    a = fake_record([1, 1, 0], [-1.0, -1.0, -3.0], [-1.0, -1.0, -0.5], "ra", "pixel_1nn")
    b = fake_record([0, 1, 1], [-5.0, -1.0, -1.0], [-4.0, -1.0, -1.0], "rb", "mhd")
    only_a, only_b = failures.disagreements(a, b)
    source = lambda image_id: np.zeros((4, 4))  # noqa: E731
    figures.comparison_gallery(a, b, only_a, only_b, source, tmp_path / "c.png",
                               {"only_a": 1, "only_b": 1, "p_value": 1.0})
    captions = [[caption for _, caption in panels] for _, panels in drawn["rows"]]
    # only pixel_1nn right on query 1: mhd chose support 2; only mhd right on query 3: pixel_1nn chose support 1
    assert captions == [["query c01 d17", "correct c01 d18", "mhd chose c02 d18"],
                        ["query c03 d17", "correct c03 d18", "pixel_1nn chose c01 d18"]]
    assert "only pixel_1nn right: 1; only mhd right: 1; exact McNemar p = 1" in drawn["title"][1]


def test_gallery_selects_only_wrong_trials_most_confidently_wrong_first():
    record = fake_record([0, 1, 0], [-5.0, -1.0, -3.0], [-4.0, -1.0, -0.5])
    wrong = failures.failures(record)
    assert list(wrong["query"]) == ["Tibetan/character03/17", "Tibetan/character01/17"]  # margins 2.5, then 1.0
    assert list(wrong["wrong_by"]) == [2.5, 1.0]
    assert list(wrong["correct_support"]) == ["Tibetan/character03/18", "Tibetan/character01/18"]
    assert list(wrong["chosen_support"]) == ["Tibetan/character01/18", "Tibetan/character02/18"]
    assert len(failures.failures(record, limit=1)) == 1


def test_confusions_and_per_alphabet_accuracy():
    record = fake_record([0, 1, 0], [-5.0, -1.0, -3.0], [-4.0, -1.0, -0.5])
    confused = failures.confused_characters(record)
    assert set(zip(confused["character"], confused["confused_with"])) == {
        ("Tibetan/character01", "Tibetan/character02"), ("Tibetan/character01", "Tibetan/character03")}
    table = failures.per_alphabet(record)
    assert table.loc["Tibetan", "trials"] == 3 and round(table.loc["Tibetan", "accuracy"], 1) == 33.3


def test_disagreements_are_the_discordant_trials():
    a = fake_record([1, 1, 0], [-1.0, -1.0, -3.0], [-1.0, -1.0, -2.0], "a", "first")
    b = fake_record([0, 1, 1], [-2.0, -1.0, -1.0], [-1.0, -1.0, -1.0], "b", "second")
    only_a, only_b = failures.disagreements(a, b)
    assert list(only_a["query"]) == ["Tibetan/character01/17"] and list(only_b["query"]) == ["Tibetan/character03/17"]
    other = fake_record([1, 1, 1], [0.0] * 3, [0.0] * 3)
    other["draws"][0]["sets"][0]["queries"][0] = "Tibetan/character09/17"
    with pytest.raises(Exception, match="not on the same trials"):
        failures.disagreements(a, other)


def test_run_records_keep_trial_identities_that_match_the_pixels(data_root, tmp_path):
    store = tmp_path / "store"
    assert main(["run", "--method", "pixel_1nn", "--protocol", "omniglot20", "--store", str(store), "--no-progress",
                 "--protocol-set", "sets_per_alphabet=1"]) == 0
    record = load_records(store)[0]
    draw = record["draws"][0]
    assert len(draw["sets"]) == 10 and len(draw["score_correct"]) == len(draw["answers"]) == 200
    table = failures.trial_table(record)
    assert (table["correct"] == (table["correct_support"].str.rsplit("/", n=1).str[0]
                                 == table["chosen_support"].str.rsplit("/", n=1).str[0])).all()
    # the recorded identities name the images that were scored: rescoring them gives the recorded scores
    from fewshot_bench.pictures.figures import ImageSource
    source = ImageSource()
    row = table.iloc[0]
    q, s = source(row["query"]).astype(float), source(row["correct_support"]).astype(float)
    assert np.isclose(-np.linalg.norm(q - s), row["score_correct"], rtol=1e-4)
    assert omniglot().images.shape[1:] == source(row["query"]).shape


def test_show_and_compare_write_galleries(data_root, tmp_path):
    store = str(tmp_path / "store")
    for method in ("pixel_1nn", "mhd"):
        assert main(["run", "--method", method, "--protocol", "omniglot20", "--store", store, "--no-progress",
                     "--protocol-set", "sets_per_alphabet=1"]) == 0
    assert main(["show", "--method", "mhd", "--protocol", "omniglot20", "--store", store,
                 "--gallery", str(tmp_path / "failures.png"), "--limit", "4"]) == 0
    assert main(["compare", "pixel_1nn", "mhd", "--protocol", "omniglot20", "--store", store,
                 "--protocol-set", "sets_per_alphabet=1",  # the runs' trials: compare pairs no others
                 "--gallery", str(tmp_path / "compare.png"), "--limit", "3"]) == 0
    from PIL import Image
    with Image.open(tmp_path / "failures.png") as im:
        assert im.height > 4 * 105  # four trials, each image at its native 105 pixels
    assert (tmp_path / "compare.png").stat().st_size > 0
    assert main(["show", "no-such-run", "--store", store]) == 2


def test_verification_records_keep_pairs_for_false_accepts_and_rejects(data_root, tmp_path):
    store = tmp_path / "store"
    assert main(["run", "--method", "pixel_1nn", "--protocol", "verification", "--store", str(store),
                 "--no-progress", "--protocol-set", "pairs=200", "--protocol-set", "threshold_pairs=100"]) == 0
    record = load_records(store)[0]
    false_accepts, false_rejects = failures.verification_errors(record)
    assert len(false_accepts) + len(false_rejects) == record["n_trials"] - sum(record["draws"][0]["correct"])
    assert list(false_accepts["score"]) == sorted(false_accepts["score"], reverse=True)
    assert (false_rejects["same"] == 1).all() and (false_accepts["same"] == 0).all()
    assert main(["show", "--protocol", "verification", "--store", str(store),
                 "--gallery", str(tmp_path / "v.png"), "--limit", "4"]) == 0


CHECK_PAGE = """<script>window.addEventListener('load', () => {
  const broken = [...document.images].filter(i => !(i.complete && i.naturalWidth > 0)).map(i => i.src);
  document.querySelectorAll('details').forEach(d => d.open = true);  // collapsed images load too
  const b = document.body;
  b.setAttribute('data-images', document.images.length);
  b.setAttribute('data-broken', JSON.stringify(broken));
  b.setAttribute('data-overflow', document.documentElement.scrollWidth - window.innerWidth);
  b.setAttribute('data-sections', [...document.querySelectorAll('section')].map(x => x.id).join(','));
  b.setAttribute('data-toc', [...document.querySelectorAll('nav a')].map(x => x.hash.slice(1)).join(','));
});</script></body>"""


def rendered(page: Path, width: int) -> dict:
    """The probe's findings on ``page`` in headless Chromium at ``width`` pixels."""
    dom = subprocess.run(["chromium", "--headless", "--no-sandbox", "--disable-gpu", f"--window-size={width},3000",
                          "--virtual-time-budget=5000", "--dump-dom", page.as_uri()],
                         capture_output=True, text=True, timeout=120).stdout
    body = dom[dom.index("<body"):dom.index(">", dom.index("<body"))]
    return dict(part.split("=", 1) for part in body.replace('"', "").split()[1:])


@pytest.mark.skipif(not shutil.which("chromium"), reason="needs Debian's chromium (.ci/run installs it)")
def test_report_renders_in_a_real_browser_at_desktop_and_phone_widths(data_root, tmp_path):
    store = str(tmp_path / "store")
    # the report shows the standard omniglot20 (other protocol options are other protocols)
    assert main(["run", "--method", "conv_siamese", "--preset", "tiny", "--protocol", "omniglot20", "--store", store,
                 "--no-progress"]) == 0
    assert main(["run", "--method", "pixel_1nn", "--protocol", "omniglot20", "--store", store, "--no-progress"]) == 0
    out = tmp_path / "report"
    tables = Path(__file__).resolve().parent.parent / "results"  # the committed tables
    assert main(["report", "--out", str(out), "--store", store, "--tables", str(tables), "--limit", "3"]) == 0
    page = (out / "index.html").read_text()
    assert "<script" not in page and "http" not in page  # static, no network
    assert '<meta name=viewport' in page and "<details open" not in page  # galleries start collapsed
    (out / "probe.html").write_text(page.replace("</body>", CHECK_PAGE))
    for width in (1400, 420):
        attrs = rendered(out / "probe.html", width)
        sections = attrs["data-sections"].split(",")
        assert sections == attrs["data-toc"].split(",")  # every section in the contents, in order
        assert {"table1", "table2", "table3", "table4", "every-run", "heatmap", "curves", "galleries"} <= set(sections)
        assert sections[:4] == ["table1", "table2", "table3", "table4"]  # the paper's tables first, then ours
        plots = len([p for p in tables.glob("*.png") if p.with_suffix(".md").is_file()])  # the committed tables
        assert int(attrs["data-images"]) == plots + 4  # the tables' plots, heatmap, the twin's curves, two galleries
        assert json.loads(attrs["data-broken"].replace("&quot;", '"')) == []
        assert int(attrs["data-overflow"]) <= 0, f"the page is wider than {width} px"


def test_a_tables_markdown_becomes_a_section_with_its_columns_and_notes():
    from fewshot_bench.pictures.report import markdown_section

    title, content = markdown_section("# table9: ours\n\n- command: `bench reproduce table9`\n\n"
                                      "| system | ours (%) | train s |\n|---|---|---|\n| a `b` | 88.3 ± 1.9 | 12 |\n\n"
                                      "## Notes\n\n- ranks: a tie <b>\n- cells far away:\n  - a 20w1s -2.0 (1,600\n"
                                      "    steps)\n  - b 5w1s -1.7\n- last\n")
    assert title == "table9: ours"
    assert "<li>cells far away:<ul><li>a 20w1s -2.0 (1,600 steps)</li><li>b 5w1s -1.7</li></ul></li><li>last" in content
    assert "<code>bench reproduce table9</code>" in content and "<th>ours (%)</th>" in content
    assert "<td>88.3 ± 1.9</td><td>12</td>" in content and "<h3>Notes</h3>" in content
    assert "a tie &lt;b&gt;" in content  # text escaped


def test_runs_with_identical_answers_are_one_heatmap_row():
    from fewshot_bench.pictures.figures import alphabet_accuracy

    def run(run_id, metric, correct):
        record = fake_record(correct, [-1.0] * 3, [-1.0 if c else 0.0 for c in correct], run_id, "pixel_1nn")
        return {**record, "seed": 0, "method_config": {"metric": metric}, "protocol_config": {}, "finished": run_id}

    records = [run("r1", "euclidean", [1, 0, 1]), run("r2", "l1", [1, 0, 1]), run("r3", "cosine", [0, 0, 1])]
    grid, _ = alphabet_accuracy(records)
    assert len(grid) == 2  # euclidean and l1 chose alike: one row under both names
    merged = next(name for name in grid.index if " = " in name)
    assert "metric=l1" in merged and "cosine" not in merged


def test_the_curve_marks_the_epoch_a_training_kept():
    import pandas as pd
    from fewshot_bench.pictures.figures import kept_epoch

    history = pd.DataFrame({"epoch": [0, 1, 2, 3], "validation_accuracy": [0.5, 0.8, 0.7, 0.75]})
    assert kept_epoch(history, "best")["epoch"] == 1
    assert kept_epoch(history, "last")["epoch"] == 3
    assert kept_epoch(history, "epoch1")["epoch"] == 0  # snapshots count epochs from 1
    assert kept_epoch(history, "epoch4")["epoch"] == 3


def test_curves_of_many_runs_put_the_legend_below_the_panels(tmp_path):
    from PIL import Image
    from fewshot_bench.pictures.figures import learning_curves

    def run(k):
        history = [{"epoch": e, "loss": 1.0 / (e + 1 + k), "validation_accuracy": 0.5 + 0.05 * e} for e in range(3)]
        return {"method": "m", "preset": None, "method_config": {"objective": "trials", "keep": "last"},
                "training": {"history": history}}

    few = Image.open(learning_curves([run(0)], tmp_path / "few.png")).size
    many = Image.open(learning_curves([run(k) for k in range(8)], tmp_path / "many.png")).size
    assert many[0] == few[0] and many[1] > few[1]  # taller by the legend's rows, not squeezed into a panel


def test_runs_read_from_one_training_share_one_curves_figure(tmp_path):
    from fewshot_bench.pictures.report import _curves

    history = [{"epoch": e, "loss": 1.0 / (e + 1), "validation_accuracy": 0.5 + 0.1 * e} for e in range(2)]

    def run(run_id, keep, trained=history):
        return {**fake_record([1, 0, 1], [-1.0] * 3, [-1.0, 0.0, -1.0], run_id, "m"), "seed": 0, "finished": run_id,
                "method_config": {"keep": keep}, "protocol_config": {}, "training": {"history": trained}}

    other = [{**h, "loss": 2.0} for h in history]
    [(_, _, content)] = _curves([run("r1", "epoch1"), run("r2", "epoch2"), run("r3", "last", other)], tmp_path)
    assert content.count("<details>") == 2 and "and 1 more read from its training" in content
    assert "<code>r1</code>, <code>r2</code>" in content and len(list(tmp_path.glob("curves-*.png"))) == 2


def test_a_gallery_is_wide_enough_for_every_title_line(tmp_path):
    """A comparison's title names two methods, presets and protocols: the picture grows to hold it whole."""
    from PIL import Image

    from fewshot_bench.pictures.figures import DPI, gallery, text_pixels

    title = ["conv_siamese (koch_adam_cpu) on omniglot20 vs contrastive_siamese (cpu) on omniglot20: the trials "
             "only one of them gets right", "only conv_siamese right: 120; only contrastive_siamese right: 80"]
    path = gallery([("a set", [(np.ones((20, 20)), "query")])], tmp_path / "g.png", title)
    width = Image.open(path).size[0]
    assert width >= text_pixels(title[0], 9, "bold") + 20 and DPI == 100
