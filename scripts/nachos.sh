#!/usr/bin/env bash
# NACHOS: early-exit branches (cbnmobilenetv3), bernulli training with the energy term, threshold tuning,
# avg_macs <= 2.7 M and accuracy >= 65 % (the original's script settings).
# Usage: bash scripts/nachos.sh /path/to/cifar10 [extra cnas.search flags]
set -euo pipefail
DATA=${1:?path to a folder holding cifar-10-batches-py}; shift
python -m cnas.search --save results/nachos --dataset cifar10 --data "$DATA" --n_classes 10 \
  --search_space cbnmobilenetv3 --lr 32 --ur 32 --first_obj top1 --sec_obj avg_macs \
  --method bernulli --tune_epsilon --mmax 2.7 --top1min 0.65 --w_alpha 1 --w_beta 1 --w_gamma 1 \
  --n_epochs 10 --warmup_ee_epochs 5 --ee_epochs 5 \
  --n_doe 100 --n_iter 8 --iterations 10 --first_predictor as --sec_predictor as "$@"
