#!/usr/bin/env bash
# FlatNAS: robustness to weight perturbation (top1_robust) vs. tiny_ml, SAM training, resolutions 128..224.
# Usage: bash scripts/flatnas.sh /path/to/cifar10 [extra cnas.search flags]
set -euo pipefail
DATA=${1:?path to a folder holding cifar-10-batches-py}; shift
python -m cnas.search --save results/flatnas --dataset cifar10 --data "$DATA" --n_classes 10 \
  --search_space mobilenetv3 --lr 128 --ur 224 --rstep 4 --first_obj top1_robust --sec_obj tiny_ml \
  --optim SAM --rho 2.0 --adaptive true --n_epochs 1 --eval_robust --sigma_min 0.05 --sigma_max 0.05 \
  --pmax 5 --constraint_mode penalty \
  --n_doe 100 --n_iter 8 --iterations 30 --first_predictor as "$@"
