"""Mutation testing of the modules that hold the harness's guarantees, and its report.

    pip install -e ".[mutation]"
    python tests/mutation_report.py                  # about 10 minutes on 2 cores (data: ../shared/data)
    python tests/mutation_report.py "fewshot_bench.records.*"          # rerun some mutants, then report

Runs mutmut on the files and tests in pyproject.toml's [tool.mutmut], only the mutants of the
functions in GUARANTEES below (slow: not part of .ci/run), then writes results/mutation.md: per
module the mutants caught and not, and each one not caught either listed under EQUIVALENT with why
it cannot change a result, or as a test to write. The score counts caught mutants among the
non-equivalent ones.
"""
from __future__ import annotations

import collections
import fnmatch
import os
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
    "fewshot_bench.evaluation.x_evaluate_trial_sets__mutmut_46": "correctness as floats (astype(None)): summarise "
                                                                 "stores int(c) of each",
    "fewshot_bench.evaluation.x_shared_images__mutmut_21": "np.asarray of Python ints is int64 on 64-bit Linux",
    "fewshot_bench.evaluation.x_shared_images__mutmut_23": "the same, dtype left out",
    "fewshot_bench.evaluation.x_class_means__mutmut_21": ".to(None) keeps the int64 counts, and float scores "
                                                         "divided by int64 counts stay in the scores' dtype",
    "fewshot_bench.evaluation.x_class_means__mutmut_25": "bincount without minlength: its length is the largest "
                                                         "class + 1, which is n_classes",
    "fewshot_bench.records.x_temp_beside__mutmut_12": "the umask is read by setting it (to 0 or 1) and put back at "
                                                      "once; the mode comes from fchmod, not from it",
    "fewshot_bench.records.x_write_atomic__mutmut_25": "missing_ok=None: the temporary file exists whenever the "
                                                       "except runs (os.replace is the last step)",
    "fewshot_bench.records.x_write_atomic__mutmut_27": "missing_ok=False: the same",
    "fewshot_bench.records.x_stored_keys__mutmut_3": "globbing a missing folder yields nothing, as the () does",
    "fewshot_bench.records.x_still_improving__mutmut_47": "> against >= the half-width: a float difference equal "
                                                          "to it exactly has measure zero",
    "fewshot_bench.records.x_still_improving__mutmut_55": "sum * len for sum / len: both parts compared hold q "
                                                          "epochs, so both scale alike",
    "fewshot_bench.experiments.runner.x_alphabet_interval__mutmut_14": "0/1 ints average alike without dtype=float",
    "fewshot_bench.experiments.runner.x_alphabet_interval__mutmut_16": "the same, dtype left out",
    "fewshot_bench.experiments.runner.x_training_summary__mutmut_15": "bool(None) is False, the default's value",
    "fewshot_bench.records.x_training_budget__mutmut_49": "a missing trial count as None: still_improving treats it "
                                                          "as 0 (falsy), the default",
    "fewshot_bench.records.x_training_budget__mutmut_51": "the same, default left out",
    "fewshot_bench.experiments.runner.x__git__mutmut_6": "harmless: the timeout matters only for a git that hangs",
    "fewshot_bench.experiments.runner.x__git__mutmut_11": "the same, timeout left out",
    "fewshot_bench.experiments.runner.x__git__mutmut_17": "the same, 6 s for 5",
    "fewshot_bench.learning.checkpoints.x\u01c1Checkpoint\u01c1load__mutmut_5": "map_location only moves tensors "
        "saved on a GPU; every checkpoint here (and in CI) is saved on the CPU, so there is none to tell",
    "fewshot_bench.learning.checkpoints.x\u01c1Checkpoint\u01c1load__mutmut_8": "the same, map_location left out",
    "fewshot_bench.learning.checkpoints.x\u01c1EarlyStopping\u01c1__init____mutmut_6": 'float("INF") is float("inf")',
}


# the functions whose mutants run and count: whole modules, and of the protocols and data only the
# held-out checks (mutmut mutates every function of a file in only_mutate; the others are not run)
GUARANTEES = {
    "fewshot_bench.stats": ["*"],
    "fewshot_bench.experiments.runner": ["*"],
    "fewshot_bench.records": ["*"],
    "fewshot_bench.evaluation": ["*"],
    "fewshot_bench.learning.checkpoints": ["*"],
    "fewshot_bench.api": ["x_check_alphabets", "x\u01c1Protocol\u01c1check_background"],
    "fewshot_bench.data.vinyals_split": ["x_characters", "x_base_alphabet"],
    "fewshot_bench.data.folders": ["x_class_keys", "x_class_key"],
    "protocols.vinyals": ["x\u01c1Vinyals\u01c1check_background"],
    "protocols.folder": ["x\u01c1Folder\u01c1check_background"],
}
PATTERNS = [f"{module}.{function}__mutmut_*" if function != "*" else f"{module}.*"
            for module, functions in GUARANTEES.items() for function in functions]
CAUGHT = {"killed", "timeout", "segfault"}  # the tests did not pass with the mutant in


def main() -> int:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["mutmut"]
    # one OpenMP thread: mutmut forks a process per mutant, and a child of a process whose OpenMP
    # pool is running hangs (every mutant would time out)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    subprocess.run([sys.executable, "-m", "mutmut", "run", *(sys.argv[1:] or PATTERNS)], cwd=ROOT, env=env,
                   check=False)
    out = subprocess.run([sys.executable, "-m", "mutmut", "results", "--all", "true"], cwd=ROOT,
                         capture_output=True, text=True).stdout
    states = {name: state for name, state in re.findall(r"^\s*(\S+__mutmut_\d+): (\w[\w ]*)$", out, re.M)
              if any(fnmatch.fnmatchcase(name, p) for p in PATTERNS)}
    by_module = collections.defaultdict(collections.Counter)
    for name, state in states.items():
        module = name.split("__mutmut_")[0].rsplit(".", 1)[0]
        if state == "survived" and name in EQUIVALENT:
            state = "equivalent"
        by_module[module]["caught" if state in CAUGHT else state] += 1
    lines = ["# Mutation testing", "",
             "- command: `python tests/mutation_report.py` (mutmut; files "
             "and tests: pyproject.toml's `[tool.mutmut]`, functions: `GUARANTEES` in the script)",
             f"- tests run: {', '.join(config['pytest_add_cli_args_test_selection'])}",
             "- caught: the tests failed (or timed out) with the mutant in; score: caught / (all - equivalent)",
             "", "| module | functions | mutants | caught | survived | no test | equivalent | score |",
             "|---|---|---|---|---|---|---|---|"]
    totals = collections.Counter()
    for module, count in sorted(by_module.items()):
        totals.update(count)
        lines.append(row(module, ", ".join("all" if f == "*" else f.removeprefix("x_").replace("x\u01c1", "").replace("\u01c1", ".")
                                          for f in GUARANTEES[module]), count))
    lines.append(row("**all**", "", totals))
    survivors = [n for n, s in states.items() if s not in CAUGHT]
    lines += ["", "## Mutants not caught", ""]
    lines += [f"- `{n}`: " + (f"equivalent: {EQUIVALENT[n]}" if n in EQUIVALENT else f"**{states[n]}: needs a test**")
              for n in survivors] or ["none"]
    (ROOT / "results" / "mutation.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0 if all(n in EQUIVALENT for n in survivors) else 1


def row(module: str, functions: str, count: collections.Counter) -> str:
    total, caught, equivalent = sum(count.values()), count["caught"], count["equivalent"]
    missed = total - caught - equivalent - count["no tests"]
    return (f"| {module} | {functions} | {total} | {caught} | {missed} | {count['no tests']} | {equivalent} | "
            f"{100 * caught / max(1, total - equivalent):.0f}% |")


if __name__ == "__main__":
    sys.exit(main())
