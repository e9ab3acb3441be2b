#!/usr/bin/env bash
# The paper's Table 2 on MNIST: the mnist preset trained with equal budgets (same steps, batch, seed, schedule) for
# each parameterisation and loss, then sample quality (FD/KID/IS on the digit network, 500 ancestral samples with 100
# respaced steps) and bits/dim (64 test images, every t <= 100 and every 10th above) per row, and a sample grid.
# Resumable: a row whose training or evaluation finished is skipped; a killed row resumes from its last checkpoint.
#   scripts/table2-mnist.sh OUT_DIR [STEPS] [DATA]        (DDPM: the CLI to run, default "node dist/src/cli/main.js";
#   ONLY="row ...": just these rows, e.g. two lanes on the two cores)
set -euo pipefail
out=${1:?usage: table2-mnist.sh OUT_DIR [STEPS] [DATA]}
steps=${2:-1000}
data=${3:-../shared/data/mnist}
ddpm=${DDPM:-node dist/src/cli/main.js}
threads=${THREADS:-1}
mkdir -p "$out"
rows=(
  "eps-simple-fixed  --prediction eps --loss simple --variance fixedlarge"
  "eps-vlb-fixed     --prediction eps --loss vlb    --variance fixedlarge"
  "eps-vlb-learned   --prediction eps --loss vlb    --variance learnedrange"
  "x0-vlb-fixed      --prediction x0  --loss vlb    --variance fixedlarge"
  "x0-vlb-learned    --prediction x0  --loss vlb    --variance learnedrange"
  "eps-hybrid-learned --prediction eps --loss hybrid --variance learnedrange"
)
for row in "${rows[@]}"; do
  set -- $row
  name=$1; shift
  # ONLY="row row": run just these rows (two lanes in parallel on disjoint rows)
  if [ -n "${ONLY:-}" ] && [[ " $ONLY " != *" $name "* ]]; then continue; fi
  dir="$out/$name"
  echo "== $name: $*"
  if [ ! -f "$dir/train.done" ]; then
    $ddpm --threads "$threads" train --data "$data" --out "$dir" --preset mnist --steps "$steps" --batch 32 --lr 5e-4 \
      --warmup 200 --ema 0.999 --dropout 0 --checkpoint-every 250 --keep 1 --seed 0 "$@"
    touch "$dir/train.done"
  fi
  [ -f "$dir/quality.json" ] || $ddpm --threads "$threads" eval quality --images "$dir" -n 500 --batch 100 \
    --sampler ancestral --steps 100 --ref "$data" --ref-num 10000 --pr-num 500 --samples "$dir/samples.npy" --out "$dir/quality.json"
  [ -f "$dir/bpd.json" ] || $ddpm --threads "$threads" eval bpd --model "$dir" --data "$data" -n 64 --batch 64 --t-stride 10 --out "$dir/bpd.json"
  [ -f "$dir/grid/grid.png" ] || $ddpm --threads "$threads" sample --model "$dir" -n 64 --batch 64 --steps 100 --out "$dir/grid"
done
echo "done: $out"
