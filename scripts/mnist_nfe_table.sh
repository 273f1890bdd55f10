#!/usr/bin/env bash
# Quality versus network evaluations (NFE) on MNIST for one diffusion checkpoint (issue 6):
# FID and KID in the digit classifier's features, N samples against N test images, for each
# sampler at about 10, 20, 50 and 100 NFE, ancestral DDPM at 1000, and any distilled
# students given after N. Rows already in OUT are kept, so an interrupted run resumes.
#
# Usage: scripts/mnist_nfe_table.sh RUN CLASSIFIER OUT [N] [STUDENT_RUN ...]
#   RUN         a `genlab train --model ddpm --data mnist` run directory
#   CLASSIFIER  a `genlab train --model classifier --data mnist` run directory
#   OUT         directory for one JSON + log per row and table.md
# Set GENLAB to the binary to use (default: genlab on PATH).
set -euo pipefail
if [ $# -lt 3 ]; then
  sed -n '2,12p' "$0"
  exit 2
fi
run=$1 clf=$2 out=$3 n=${4:-500}
shift $(( $# < 4 ? $# : 4 ))
genlab=${GENLAB:-genlab}
mkdir -p "$out"

# row NAME CKPT SAMPLER [extra eval flags, e.g. --steps K]
row() {
  local name=$1 ckpt=$2 sampler=$3
  shift 3
  local j="$out/$name.json"
  if [ -f "$j" ]; then return; fi
  echo "$(date +%T) $name"
  "$genlab" eval --real mnist:test --fake "$ckpt" --n "$n" --features "$clf" \
    --metrics fid,kid --sampler "$sampler" --seed 0 --json "$j.part" "$@" \
    > "$out/$name.log" 2>&1
  mv "$j.part" "$j"
}

for nfe in 10 20 50 100; do
  row "ddpm-$nfe" "$run" ddpm --steps "$nfe"
  row "ddim-$nfe" "$run" ddim --steps "$nfe"
  row "euler-$nfe" "$run" euler --steps "$nfe"
  row "euler-ancestral-$nfe" "$run" euler-ancestral --steps "$nfe"
  row "heun-$nfe" "$run" heun --steps $(( (nfe + 1) / 2 ))          # 2K - 1 NFE
  row "dpm-solver3-$nfe" "$run" dpm-solver --steps $(( (nfe + 2) / 3 )) # 3K - 2 NFE
  row "dpm++2m-$nfe" "$run" dpm++2m --steps "$nfe"
  # The spacing Lu et al. use for few-step DPM-Solver: uniform in log-SNR.
  row "dpm-solver3-logsnr-$nfe" "$run" dpm-solver --steps $(( (nfe + 2) / 3 )) --spacing logsnr
  row "dpm++2m-logsnr-$nfe" "$run" dpm++2m --steps "$nfe" --spacing logsnr
done
for student in "$@"; do
  # A distilled student samples with DDIM on its own trailing grid and steps.
  row "student-$(basename "$student")" "$student" ddim
done
row "ddpm-1000" "$run" ddpm --steps 1000

{
  echo "| row | sampling | FID | KID |"
  echo "|---|---|---|---|"
  for j in "$out"/*.json; do
    jq -r --arg row "$(basename "$j" .json)" \
      '"| \($row) | \(.fake | sub("^[^(]*\\("; "") | sub(", seed.*"; "")) | \(.metrics[] | select(.metric == "fid") | .value * 10 | round / 10) | \(.metrics[] | select(.metric == "kid") | .value * 100 | round / 100) |"' "$j"
  done
} > "$out/table.md"
cat "$out/table.md"
