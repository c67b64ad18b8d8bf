#!/usr/bin/env bash
# CNAS (TinyML): top1 and the penalized tiny_ml cost on CIFAR-10, the original's constraint defaults and penalty.
# Usage: bash scripts/cnas_tinyml.sh /path/to/cifar10 [extra cnas.search flags]
set -euo pipefail
DATA=${1:?path to a folder holding cifar-10-batches-py}; shift
python -m cnas.search --save results/cnas_tinyml --dataset cifar10 --data "$DATA" --n_classes 10 \
  --search_space mobilenetv3 --lr 32 --ur 32 --first_obj top1 --sec_obj tiny_ml \
  --pmax 2 --amax 5 --wp 1 --wm 0.025 --wa 1 --penalty 1e10 --constraint_mode penalty \
  --n_doe 100 --n_iter 8 --iterations 30 --n_epochs 5 --first_predictor as "$@"
