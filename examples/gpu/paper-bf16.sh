# The same under bf16 autocast (--set precision=bf16), each epoch's weights kept as a snapshot:
#   LIMIT=460 RESERVE=100 OUT=out bash examples/gpu/paper-bf16.sh
START=$SECONDS; LIMIT=${LIMIT:-470}; RESERVE=${RESERVE:-100}
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1 FEWSHOT_BENCH_DATA=${FEWSHOT_BENCH_DATA:-$PWD/.gpu/data} FEWSHOT_BENCH_CACHE=/tmp/fbcache OMP_NUM_THREADS=8
RUN="python3 -m fewshot_bench.cli run --method conv_siamese --preset paper --no-progress --set precision=bf16"
log() { echo "[$((SECONDS - START)) s] $*"; }
$RUN --set pair_steps=300 --set epochs=1 --protocol omniglot20 --trial-seed 0 --store /tmp/probe16 --json > $OUT/probe16.json || exit 1
E=$(python3 examples/gpu/epochs_that_fit.py $((LIMIT - RESERVE - (SECONDS - START))) < $OUT/probe16.json); SNAP=$(seq -s, 1 $E)
log "training: epochs=$E snapshots=$SNAP"
timeout $((LIMIT - 70 - (SECONDS - START))) $RUN --set epochs=$E --set snapshots=$SNAP --protocol omniglot20 --trial-seed 0-9 --store $OUT/b16 || exit 1
for k in $(seq 1 $((E - 1))); do timeout $((LIMIT - 30 - (SECONDS - START))) $RUN --set epochs=$E --set snapshots=$SNAP --set keep=epoch$k --protocol omniglot20 --trial-seed 0-9 --store $OUT/b16; log "epoch $k scored"; done
timeout $((LIMIT - 15 - (SECONDS - START))) $RUN --set epochs=$E --set snapshots=$SNAP --protocol lake_runs --store $OUT/b16
rm -rf $OUT/b16/checkpoints $OUT/b16/locks; log done
