#!/usr/bin/env bash
# EDANAS: early-exit thresholds (eemobilenetv3) at a fixed 32 px resolution, error vs. average MACs, joint training.
# Usage: bash scripts/edanas.sh /path/to/cifar10 [extra cnas.search flags]
set -euo pipefail
DATA=${1:?path to a folder holding cifar-10-batches-py}; shift
python -m cnas.search --save results/edanas --dataset cifar10 --data "$DATA" --n_classes 10 \
  --search_space eemobilenetv3 --lr 32 --ur 32 --first_obj top1 --sec_obj avg_macs \
  --method joint --n_epochs 5 --warmup_ee_epochs 2 --ee_epochs 0 \
  --n_doe 100 --n_iter 8 --iterations 30 --first_predictor as --sec_predictor as "$@"
