# The bridge's missing runs on a lent GPU: several `bench reproduce bridge` sharing one store (a
# network at 28x28 leaves most of an H200 idle, so runs side by side share it). The store comes from
# results/bridge-runs.jsonl.gz and goes back packed into $OUT, to be unpacked where the rest runs:
#   ln -sfn $PWD/methods fewshot_bench/methods; ln -sfn $PWD/protocols fewshot_bench/protocols  # not installed
#   WORKERS=6 LIMIT=540 OUT=out bash examples/gpu/bridge.sh
#   bench store unpack out/bridge-runs.jsonl.gz --store runs          # back here
# A training still running at LIMIT is lost (its checkpoint stays there); finished runs come back.
START=$SECONDS; LIMIT=${LIMIT:-540}; WORKERS=${WORKERS:-6}; STORE=${STORE:-/tmp/bridge-store}
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1 FEWSHOT_BENCH_DATA=${FEWSHOT_BENCH_DATA:-$PWD/.gpu/data}
export FEWSHOT_BENCH_CACHE=${FEWSHOT_BENCH_CACHE:-/tmp/fbcache} OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}
B="python3 -m fewshot_bench.cli"
log() { echo "[$((SECONDS - START)) s] $*"; }
[ -f results/bridge-runs.jsonl.gz ] && $B store unpack results/bridge-runs.jsonl.gz --store $STORE
python3 -c "from fewshot_bench.data.datasets import data_root, load_omniglot; load_omniglot(data_root(None))"  # decoded once, before the workers
for i in $(seq $WORKERS); do
    timeout $((LIMIT - 20 - (SECONDS - START))) $B reproduce bridge --preset cpu --store $STORE --out /tmp/bridge-$i \
        > $OUT/worker-$i.log 2>&1 &
    sleep 10  # the first plans the rate grid's runs; the others find them in the store
done
wait
log "workers done"; $B store pack $OUT/bridge-runs.jsonl.gz --store $STORE; log done
