"""``bench data``: what datasets are present and verified; ``bench data fetch`` downloads the missing ones."""
from __future__ import annotations

from pathlib import Path

from rich.table import Table

from fewshot_bench.cli.common import console, data_root_arg, out, writable_folder
from fewshot_bench.errors import UserError


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("data", help="show and verify the datasets; `bench data fetch` downloads missing ones; "
                                          "`bench data check PATH` describes your own folder of images",
                              description="show: the datasets under the data root, verified by content. fetch: "
                                          "download what is missing from the official sources. check PATH: a folder "
                                          "of class folders (root/class/* or root/group/class/*) as the folder "
                                          "protocol would see it: classes, images, sizes, modes, the split, problems.")
    p.add_argument("action", nargs="?", choices=["show", "fetch", "check"], default="show",
                   help="show (default), fetch, or check PATH")
    p.add_argument("path", nargs="?", help="check: the folder to describe")
    p.add_argument("--way", type=int, default=5, help="check: the episodes' way to check the test part against")
    p.add_argument("--shot", type=int, default=1, help="check: support images per class")
    p.add_argument("--queries", type=int, default=1, help="check: query images per class")
    data_root_arg(p)
    p.add_argument("--base-url", help="download from this mirror (files under their data-root paths)")
    p.set_defaults(func=command)


def command(args) -> None:
    from fewshot_bench.data.datasets import data_root

    if args.action == "check":
        return check_folder(args)
    if args.path:
        raise UserError(f"{args.path!r}: only `bench data check PATH` takes a path; the data root is --data-root")
    root = data_root(args.data_root)
    if args.action == "fetch":
        writable_folder(str(root), "--data-root")  # before any download
        fetch_missing(root, args.base_url)
    show_data(root)


def fetch_missing(root: Path, base_url: str | None) -> None:
    from rich.progress import DownloadColumn, Progress, TransferSpeedColumn

    from fewshot_bench.data.fetch import download, missing_files

    todo = missing_files(root)
    if not todo:
        console.print(f"all datasets present under {root}")
        return
    with Progress(*Progress.get_default_columns(), DownloadColumn(), TransferSpeedColumn(), console=console) as bar:
        for remote in todo:
            task = bar.add_task(f"fetch {remote.name}", total=None)
            download(remote, root, base_url, on_bytes=lambda n, t=task: bar.advance(t, n))
            console.print(f"downloaded {root / remote.name} (MD5 ok)")


def show_data(root: Path) -> None:
    from fewshot_bench.data.datasets import load_mnist, load_omniglot, verify_mnist, verify_omniglot
    from fewshot_bench.data.lake import RUNS_FILE, load_runs, verify_runs_file
    from fewshot_bench.data.vinyals_split import PARTS, read_split, verify_split

    table = Table(title=f"datasets under {root}", title_justify="left")
    table.add_column("dataset")
    table.add_column("status")
    table.add_column("content")
    checks = (("omniglot", lambda: load_omniglot(root), verify_omniglot,
               lambda s: f"{s.meta['alphabet'].nunique()} alphabets, {s.meta['label'].nunique()} characters, "
                         f"{len(s):,} images"),
              ("mnist", lambda: load_mnist(root), verify_mnist, lambda s: f"{len(s):,} test images"),
              ("lake runs", lambda: load_runs(root / RUNS_FILE), lambda runs: verify_runs_file(runs, root / RUNS_FILE),
               lambda runs: f"{len(runs)} runs, {sum(len(r.queries) for r in runs)} trials, SHA-256 as published"),
              ("vinyals split", lambda: {part: read_split(root, part) for part in PARTS}, lambda _: verify_split(root),
               lambda parts: ", ".join(f"{part} {len(classes):,}" for part, classes in parts.items()) + " classes"))
    problems = 0
    for name, load, verify, describe in checks:
        try:
            images = load()
        except UserError as exc:
            table.add_row(name, "[red]missing or unreadable[/]", str(exc))
            problems += 1
            continue
        issues = verify(images)
        problems += bool(issues)
        table.add_row(name, "[red]unexpected content[/]" if issues else "[green]verified[/]",
                      "; ".join(issues) or describe(images))
    out.print(table)
    if problems:
        raise UserError(f"{problems} dataset(s) missing or wrong under {root}; "
                        f"run `bench data fetch --data-root {root}`")


def check_folder(args) -> None:
    from fewshot_bench.data.folders import describe

    if not args.path:
        raise UserError("bench data check needs the folder: bench data check PATH")
    info = describe(Path(args.path), way=args.way, shot=args.shot, queries=args.queries)
    table = Table(title=f"{info['root']} as a few-shot dataset", title_justify="left", show_header=False)
    table.add_column("what", style="bold")
    table.add_column("value", overflow="fold")
    low, median, high = info["images_per_class"]
    table.add_row("layout", info["layout"] + (f", {info['groups']} groups" if info["groups"] else ""))
    table.add_row("classes", f"{info['classes']:,}")
    table.add_row("images", f"{info['images']:,}; per class {low}-{high}, median {median:g}")
    table.add_row("sizes", ", ".join(f"{size} ({n})" for size, n in list(info["sizes"].items())[:5])
                  + f"  (of {info['sampled']} sampled)")
    table.add_row("modes", ", ".join(f"{mode} ({n})" for mode, n in info["modes"].items()))
    table.add_row("split (0.6/0.2/0.2, seed 0)", ", ".join(f"{part} {n}" for part, n in info["split"].items())
                  + " classes")
    out.print(table)
    for problem in info["problems"]:
        out.print(f"problem: {problem}", highlight=False, markup=False)
    if info["problems"]:
        raise UserError(f"{len(info['problems'])} problem(s) in {info['root']} (above)")
    out.print(f"ready: bench run --method pixel_1nn --protocol folder --protocol-set root={info['root']}",
              highlight=False, markup=False, soft_wrap=True)
