"""Mutation testing of the modules that hold the harness's guarantees, and its report.

    pip install -e ".[mutation]"
    python tests/mutation_report.py            # mutmut run, then results/mutation.md

Runs mutmut with the modules and tests in pyproject.toml's [tool.mutmut] (slow: not part of
.ci/run), then writes results/mutation.md: per module the mutants killed and survived, and each
survivor either listed under EQUIVALENT with why it cannot change a result, or as a test to write.
The score counts killed mutants among the non-equivalent ones.
"""
from __future__ import annotations

import collections
import re
import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# mutants that change no result for any valid input, each with the reason
EQUIVALENT = {
    "fewshot_bench.stats.x_t_interval__mutmut_3": "asarray without dtype=float: numeric lists average and spread alike",
    "fewshot_bench.stats.x_t_interval__mutmut_5": "the same, dtype left out",
    "fewshot_bench.stats.x_t_interval__mutmut_13": 'float("NAN") is float("nan")',
    "fewshot_bench.stats.x_set_interval__mutmut_3": "asarray without dtype=float: 0/1 correctness averages alike",
    "fewshot_bench.stats.x_set_interval__mutmut_5": "the same, dtype left out",
    "fewshot_bench.stats.x_mcnemar_exact__mutmut_3": "without dtype=bool: for 0/1 integers a & ~b and ~a & b count "
                                                     "the same trials as for booleans (~1 & 1 == 0, 1 & ~0 == 1)",
    "fewshot_bench.stats.x_mcnemar_exact__mutmut_5": "the same, dtype left out",
    "fewshot_bench.stats.x_mcnemar_exact__mutmut_8": "the same, for the second method",
    "fewshot_bench.stats.x_mcnemar_exact__mutmut_10": "the same, for the second method, dtype left out",
    "fewshot_bench.stats.x_mcnemar_exact__mutmut_35": "binomtest's p defaults to 0.5, the value the code gives",
}


def main() -> int:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["mutmut"]
    subprocess.run([sys.executable, "-m", "mutmut", "run"], cwd=ROOT, check=False)
    out = subprocess.run([sys.executable, "-m", "mutmut", "results", "--all", "true"], cwd=ROOT,
                         capture_output=True, text=True).stdout
    states = dict(re.findall(r"^\s*(\S+__mutmut_\d+): (\w[\w ]*)$", out, re.M))
    by_module = collections.defaultdict(collections.Counter)
    for name, state in states.items():
        module = name.split(".x_")[0]
        equivalent = state == "survived" and name in EQUIVALENT
        by_module[module]["equivalent" if equivalent else state] += 1
    lines = ["# Mutation testing", "", "- command: `python tests/mutation_report.py` (mutmut; modules and tests: "
             "pyproject.toml's `[tool.mutmut]`)",
             f"- mutated: {', '.join(config['only_mutate'])}; tests run: {', '.join(config['pytest_add_cli_args_test_selection'])}",
             "- score: killed / (all - equivalent)", "", "| module | mutants | killed | survived | equivalent | score |",
             "|---|---|---|---|---|---|"]
    for module, count in sorted(by_module.items()):
        total, killed, equivalent = sum(count.values()), count["killed"], count["equivalent"]
        lines.append(f"| {module} | {total} | {killed} | {count['survived']} | {equivalent} | "
                     f"{100 * killed / max(1, total - equivalent):.0f}% |")
    survivors = [n for n, s in states.items() if s == "survived"]
    lines += ["", "## Survivors", ""]
    lines += [f"- `{n}`: " + (f"equivalent: {EQUIVALENT[n]}" if n in EQUIVALENT else "**not killed: needs a test**")
              for n in survivors] or ["none"]
    (ROOT / "results" / "mutation.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0 if all(n in EQUIVALENT for n in survivors) else 1


if __name__ == "__main__":
    sys.exit(main())
