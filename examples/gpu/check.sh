# The GPU check (issue 62), sized for a 9-minute call on one lent GPU: the speed report of Koch's paper
# preset, then the preset trained from scratch for as many full epochs as fit (150k pairs x 9 views an
# epoch), each epoch's weights scored on our draws (10 draws), Lake's runs and verification, then
# Koch's MNIST network on MNIST 10-versus-1 if time is left. The records are packed with the device
# named. From a checkout's root on the GPU machine (methods/ and protocols/ linked in, not installed):
#   ln -sfn $PWD/methods fewshot_bench/methods; ln -sfn $PWD/protocols fewshot_bench/protocols
#   OUT=$OUT LIMIT=540 bash examples/gpu/check.sh
# then here: cp $OUT/gpu-check-runs.jsonl.gz results/gpu/ and
#   bench store unpack results/gpu/gpu-check-runs.jsonl.gz --store runs-gpu && bench table --store runs-gpu --out results/gpu
set -u
START=$SECONDS; LIMIT=${LIMIT:-540}; RESERVE=${RESERVE:-150}
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1 FEWSHOT_BENCH_DATA=${FEWSHOT_BENCH_DATA:-$PWD/.gpu/data} FEWSHOT_BENCH_CACHE=/tmp/fbcache
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-8}
B="python3 -m fewshot_bench.cli"
STORE=$OUT/runs
log() { echo "[$((SECONDS - START)) s] $*"; }
left() { echo $((LIMIT - (SECONDS - START))); }
mkdir -p "$OUT"
{ nvidia-smi -L; python3 -c "import torch, sys; print(sys.version.split()[0], torch.__version__, torch.cuda.is_available() and torch.cuda.get_device_name())"; } 2>&1

log "speed report: bench speed train --device cuda --preset paper"
timeout 150 $B speed train --device cuda --preset paper > "$OUT/speed.json" || { log "speed report failed"; exit 1; }
EPOCHS=$(python3 examples/gpu/epochs_from_speed.py $(( $(left) - RESERVE )) < "$OUT/speed.json")
log "training: $EPOCHS epochs"
SNAPSHOTS=$(seq -s, 1 "$EPOCHS")
RUN="$B run --method conv_siamese --preset paper --device cuda --no-progress --store $STORE --set epochs=$EPOCHS --set patience=$EPOCHS --set snapshots=$SNAPSHOTS"
timeout $(( $(left) - 60 )) $RUN --set keep=epoch1 --protocol omniglot20 --trial-seed 0-9 || log "training stopped"
for k in $(seq 1 "$EPOCHS"); do  # each epoch's weights, scored: the training is stored, these only score
  for protocol in "omniglot20 --trial-seed 0-9" lake_runs verification; do
    [ "$(left)" -gt 40 ] || break 2
    [ "$k" = 1 ] && [ "$protocol" = "omniglot20 --trial-seed 0-9" ] && continue
    timeout $(( $(left) - 20 )) $RUN --set keep=epoch$k --protocol $protocol
  done
done
if [ "$(left)" -gt 90 ]; then
  log "MNIST: Koch's MNIST network (the mnist preset) for the epochs that fit"
  timeout $(( $(left) - 15 )) $B run --method conv_siamese --preset mnist --device cuda --no-progress --store "$STORE" \
    --set epochs=2 --set patience=2 --protocol mnist10 --trial-seed 0-9 || log "MNIST stopped"
fi
rm -rf "$STORE/checkpoints" "$STORE/locks" "$STORE/partial"
$B store pack "$OUT/gpu-check-runs.jsonl.gz" --store "$STORE"
log done; ls -la "$OUT"
