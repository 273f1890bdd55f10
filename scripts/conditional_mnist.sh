#!/usr/bin/env bash
# Class-conditional MNIST (issue 20): the guidance table and the inpainting check.
#
# For each guidance scale w: PER_CLASS samples of every class (DDIM, 50 steps), then in the
# digit classifier's features FID and IS against the test set and class-acc (the share the
# classifier assigns to the requested class). Then inpainting of the first N test digits
# with the right half masked, by replacement and by RePaint, with the share whose true
# label the classifier recovers. Rows already in OUT are kept, so an interrupted run
# resumes.
#
# Usage: scripts/conditional_mnist.sh RUN CLASSIFIER OUT [PER_CLASS] [N_INPAINT]
#   RUN         a `genlab train --model ddpm --data mnist --class-conditional` run
#   CLASSIFIER  a `genlab train --model classifier --data mnist` run
# Set GENLAB to the binary to use (default: genlab on PATH).
set -euo pipefail
if [ $# -lt 3 ]; then
  sed -n '2,15p' "$0"
  exit 2
fi
run=$1 clf=$2 out=$3 per_class=${4:-100} n_inpaint=${5:-500}
genlab=${GENLAB:-genlab}
mkdir -p "$out"

for w in 0 0.5 1 2 3 5; do
  # samples-wW.npy (+ .labels.npy, + the sampling sidecar .json), eval-wW.json
  s="$out/samples-w$w.npy" j="$out/eval-w$w.json"
  if [ ! -f "$s" ]; then
    echo "$(date +%T) guidance $w: sampling"
    "$genlab" sample --ckpt "$run" --class all --n "$per_class" --guidance "$w" --seed 1 \
      --out "$s.part.npy" > "$out/samples-w$w.log" 2>&1
    mv "$s.part.labels.npy" "$out/samples-w$w.labels.npy"
    mv "$s.part.json" "$out/samples-w$w.json"
    mv "$s.part.npy" "$s"
  fi
  if [ ! -f "$j" ]; then
    echo "$(date +%T) guidance $w: evaluating"
    "$genlab" eval --real mnist:test --fake "$s" --features "$clf" \
      --metrics fid,is,class-acc --seed 0 --json "$j.part" > "$out/eval-w$w.log" 2>&1
    mv "$j.part" "$j"
  fi
done
# One picture per scale with a row per digit (10 of each).
for w in 1 3; do
  png="$out/grid-w$w.png"
  [ -f "$png" ] || "$genlab" sample --ckpt "$run" --class all --n 10 --guidance "$w" --seed 2 \
    --out "$png" > /dev/null
done

for method in replace repaint; do
  j="$out/inpaint-$method.json"
  png="$out/inpaint-$method-picture.png"
  [ -f "$png" ] || "$genlab" inpaint --ckpt "$run" --from mnist:test --n 8 --mask right-half \
    --method "$method" --steps 100 --seed 0 --out "$png" > /dev/null
  [ -f "$j" ] && continue
  echo "$(date +%T) inpaint $method"
  "$genlab" inpaint --ckpt "$run" --from mnist:test --n "$n_inpaint" --mask right-half \
    --method "$method" --steps 100 --classifier "$clf" --seed 0 --out "$out/inpaint-$method.npy" \
    > "$out/inpaint-$method.log" 2>&1   # writes $j beside the .npy
done
"$genlab" img2img --ckpt "$run" --from mnist:test --n 8 --strength 0.2,0.4,0.6,0.8,1 --seed 0 \
  --out "$out/img2img-sweep.png" > /dev/null

{
  echo "| guidance w | class-acc | FID | IS |"
  echo "|---:|---:|---:|---:|"
  for w in 0 0.5 1 2 3 5; do
    python3 - "$out/eval-w$w.json" "$w" <<'PY'
import json, sys
j = json.load(open(sys.argv[1]))
v = {m["metric"]: m["value"] for m in j["metrics"]}
print(f"| {sys.argv[2]} | {100 * v['class-acc']:.1f}% | {v['fid']:.1f} | {v['is']:.2f} |")
PY
  done
  for method in replace repaint; do
    python3 - "$out/inpaint-$method.json" "$method" <<'PY'
import json, sys
j = json.load(open(sys.argv[1]))
print(f"inpainting ({sys.argv[2]}, right half, {j['options']['steps']} steps): "
      f"classifier recovers the true label on {100 * j['classifier_accuracy']:.1f}%")
PY
  done
} | tee "$out/table.md"
