"""Each guarantee's guarding line removed, one at a time: its test in test_guarantees.py must fail.

    python tests/guard_removal.py        # from the repository root; about 8 minutes on 2 cores

Prints GUARD REMOVED (the test failed, as it must) or SURVIVED (the test missed it) per guard,
and restores every file. Not part of the suite (it runs the suite's tests eleven times).
"""
import subprocess, sys
from pathlib import Path
T = "tests/test_guarantees.py::"
CASES = [
 ("fewshot_bench/experiments/runner.py", "    protocol.check_background(background)\n    validation", "    validation", ["test_a_leaking_background_is_refused_by_run_before_any_training", "test_a_leaking_background_is_refused_by_bench_run_before_any_training"]),
 ("fewshot_bench/learning/trainer.py", "        if state:  # resume an interrupted training", "        if False:  # resume an interrupted training", ["test_an_interrupted_training_resumes_with_only_the_missing_epochs"]),
 ("fewshot_bench/experiments/runner.py", "[f\"{d['trial_seed']}/{g}\" for g in d[\"groups\"]]", "[g for g in d[\"groups\"]]", ["test_a_records_interval_pools_the_sets_of_every_draw_kept_apart_by_draw"]),
 ("fewshot_bench/records.py", "    fd, tmp = temp_beside(path)\n", "    path.write_text(content) if isinstance(content, str) else path.write_bytes(content); os.fsync(0)\n    fd, tmp = temp_beside(path)\n", ["test_a_write_that_fails_midway_leaves_the_old_record_and_no_temporary_file"]),
 ("fewshot_bench/cli/compare.py", " and r[\"seed\"] == args.seed", "", ["test_compare_refuses_runs_that_did_not_face_the_same_trials[change0]"]),
 ("fewshot_bench/cli/compare.py", " r.get(\"protocol_version\") == version and", "", ["test_compare_refuses_runs_that_did_not_face_the_same_trials[change1]"]),
 ("protocols/verification.py", "        held = self.threshold_pairs()\n", "        held = self.pairs(trial_seed)[0]\n", ["test_the_verification_threshold_is_the_best_on_the_validation_pairs"]),
 ("protocols/vinyals.py", "            held |= characters(class_set(self.data_root, \"val\"))", "            pass", ["test_a_val_character_in_vinyals_training_data_is_refused_under_train_split_train"]),
 ("protocols/folder.py", "for part in (\"val\", \"test\")", "for part in (\"test\",)", ["test_a_val_class_in_a_folders_training_data_is_refused"]),
 ("fewshot_bench/learning/checkpoints.py", "        return epoch - self.best_epoch >= self.patience", "        return False", ["test_early_stopping_stops_where_the_validation_curve_says_and_keeps_that_epochs_weights"]),
 ("fewshot_bench/learning/method.py", "fingerprint(self.weights_name, self.training_config(), data_key, seed, validation_key)", "fingerprint(self.weights_name, self.training_config(), seed, validation_key)", ["test_other_background_data_gets_its_own_checkpoint_and_a_new_training"]),
]
survived = 0
for path, old, new, tests in CASES:
    p = Path(path); orig = p.read_text()
    assert old in orig, (path, old)
    p.write_text(orig.replace(old, new, 1))
    try:
        r = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *[T + t for t in tests]], capture_output=True, text=True)
        last = [l for l in r.stdout.splitlines() if "passed" in l or "failed" in l][-1:]
        print("GUARD REMOVED" if r.returncode else "SURVIVED!", path, "|", old.strip()[:60], "->", last)
        survived += r.returncode == 0
    finally:
        p.write_text(orig)
sys.exit(1 if survived else 0)
