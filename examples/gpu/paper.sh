# Koch's paper preset on a GPU (run on the lent H200 on 2026-12-04, results/gpu/): a probe of 300
# steps times a step, then as many of the paper's full epochs (150k pairs x 9 views, 10,547 steps of
# 128 pairs) as fit the time left, then the kept weights scored on omniglot20 (10 draws), Lake's runs
# and verification. Run from a checkout's root, $OUT a folder for the records:
#   ln -sfn $PWD/methods fewshot_bench/methods; ln -sfn $PWD/protocols fewshot_bench/protocols  # not installed
#   PROBE=300 LIMIT=550 RESERVE=110 OUT=out bash examples/gpu/paper.sh
START=$SECONDS; LIMIT=${LIMIT:-560}; RESERVE=${RESERVE:-110}; PROBE=${PROBE:-150}; EXTRA=${EXTRA:-}
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1 FEWSHOT_BENCH_DATA=${FEWSHOT_BENCH_DATA:-$PWD/.gpu/data} FEWSHOT_BENCH_CACHE=/tmp/fbcache
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-8}
B="python3 -m fewshot_bench.cli"
RUN="$B run --method conv_siamese --preset paper --no-progress $EXTRA"
log() { echo "[$((SECONDS - START)) s] $*"; }
{ nvidia-smi -L; python3 -c "import torch, sys; print(sys.version.split()[0], torch.__version__, torch.cuda.is_available() and torch.cuda.get_device_name())"; } 2>&1
log probe
$RUN --set pair_steps=$PROBE --set epochs=1 --protocol omniglot20 --trial-seed 0 --store /tmp/probe --json > $OUT/probe.json || { log probe failed; exit 1; }
EPOCHS=$(python3 examples/gpu/epochs_that_fit.py $((LIMIT - RESERVE - (SECONDS - START))) < $OUT/probe.json)
log "training: --set epochs=$EPOCHS"
timeout $((LIMIT - 60 - (SECONDS - START))) $RUN --set epochs=$EPOCHS --protocol omniglot20 --trial-seed 0-9 --store $OUT/runs
log "lake_runs"
timeout $((LIMIT - 40 - (SECONDS - START))) $RUN --set epochs=$EPOCHS --protocol lake_runs --store $OUT/runs
log "verification"
timeout $((LIMIT - 5 - (SECONDS - START))) $RUN --set epochs=$EPOCHS --protocol verification --store $OUT/runs
rm -rf $OUT/runs/checkpoints $OUT/runs/locks
log done; ls -la $OUT $OUT/runs
