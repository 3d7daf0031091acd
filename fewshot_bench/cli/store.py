"""``bench store``: carry a results store's runs to another machine (or into git) and back."""
from __future__ import annotations

from pathlib import Path

from fewshot_bench.cli.common import say, store_arg, writable_file, writable_store


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("store", help="pack a store's runs into one file, or unpack one into a store",
                              description="A store lives on one machine. `pack` writes its run records, without "
                                          "the fields only pictures of single trials need, as one gzipped file; "
                                          "`unpack` adds a pack's runs to a store (runs it holds are kept), so a "
                                          "reproduce there skips them and its tables count them.")
    p.add_argument("action", choices=["pack", "unpack"], help="pack: store -> FILE; unpack: FILE -> store")
    p.add_argument("file", metavar="FILE.jsonl.gz", help="the pack")
    store_arg(p)
    p.set_defaults(func=command)


def command(args) -> None:
    from fewshot_bench.records import pack_records, store_dir, unpack_records

    store, path = store_dir(args.store), Path(args.file).expanduser()
    if args.action == "pack":
        writable_file(args.file, "FILE")
        n = pack_records(store, path)
        say(f"packed {n} runs of {store} into {path} ({path.stat().st_size / 1024:,.0f} KiB)")
    else:
        writable_store(args)
        added, present = unpack_records(path, store)
        say(f"unpacked {added} runs into {store}" + (f"; {present} were there already" if present else ""))
