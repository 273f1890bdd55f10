#!/usr/bin/env bash
# Image-map conditions on MNIST (issue 20): SR3-style super-resolution from 7x7 and digits
# from their Sobel edge maps.
#
# Each model generates from the maps of the first N test digits (DDIM, 50 steps); the
# results are compared with the originals (PSNR; for super-resolution also the bicubic
# upsampling the model sees, and the mean of SAMPLES samples), and the digit classifier
# reports how many it assigns to their true labels (and how many of the bicubic
# upsamplings). A picture of the first 8 goes beside each.
#
# Usage: scripts/image_maps_mnist.sh SR_RUN EDGES_RUN CLASSIFIER OUT [N] [SAMPLES]
#   SR_RUN      `genlab train --model ddpm --data mnist --image-condition low-res:7` run
#   EDGES_RUN   `genlab train --model ddpm --data mnist --image-condition edges` run
#   CLASSIFIER  `genlab train --model classifier --data mnist` run
# Set GENLAB to the binary to use (default: genlab on PATH).
set -euo pipefail
if [ $# -lt 4 ]; then
  sed -n '2,15p' "$0"
  exit 2
fi
sr=$1 edges=$2 clf=$3 out=$4 n=${5:-500} samples=${6:-4}
genlab=${GENLAB:-genlab}
mkdir -p "$out"
"$genlab" superres --ckpt "$sr" --from mnist:test --n "$n" --eta 1 --samples "$samples" --seed 0 \
  --classifier "$clf" --out "$out/sr-$n.npy" | tee "$out/sr-$n.log"
"$genlab" superres --ckpt "$sr" --from mnist:test --n 8 --samples "$samples" --eta 1 --seed 0 \
  --out "$out/sr-8.png"
"$genlab" translate --ckpt "$edges" --from mnist:test --n "$n" --eta 1 --seed 0 \
  --classifier "$clf" --out "$out/edges-$n.npy" | tee "$out/edges-$n.log"
"$genlab" translate --ckpt "$edges" --from mnist:test --n 8 --samples 2 --eta 1 --seed 0 \
  --out "$out/edges-8.png"
