#!/usr/bin/env bash
# Fill the statistics cache with the pools of issue 3 and print the wall time of each:
# 500 networks of each NB201 dataset (seed 0) and every network of each NDS ImageNet space
# (the seven of the protocol, then the four optional sweeps where present),
# with the [probe] settings of experiments/default.toml, on JOBS workers (default 2).
# With RUN (an evolution run directory), the NB201 samples leave out the networks that run
# used: with every NDS network, they are then the held-out networks of
# `experiments/heldout.py --run RUN --n 500`, whose expressions score from the cache.
# Networks already in the cache are skipped (their time is not counted): point
# EZNAS_CACHE_DIR at an empty directory to time everything from scratch.
#
#   bash experiments/fill_pools.sh [JOBS] [RUN]
set -euo pipefail
jobs="${1:-2}"
exclude=()
[[ -n "${2:-}" ]] && exclude=(--exclude-run "$2")
tasks=(nb201:cifar10 nb201:cifar100 nb201:ImageNet16-120
       nds:DARTS_in nds:Amoeba_in nds:NASNet_in nds:ENAS_in nds:PNAS_in nds:ResNeXt-A_in nds:ResNeXt-B_in)
optional=(nds:DARTS_fix-w-d_in nds:DARTS_lr-wd_in nds:ResNet_lr-wd_in nds:Vanilla_lr-wd_in)
for task in "${optional[@]}"; do  # the other NDS ImageNet sweeps, where their files are found
  if eznas info "$task" >/dev/null 2>&1; then tasks+=("$task"); else echo "skip $task: its file is not found"; fi
done
for task in "${tasks[@]}"; do
  if [[ $task == nb201:* ]]; then size=(--n 500 --seed 0 "${exclude[@]}"); else size=(--all); fi
  SECONDS=0
  eznas stats --task "$task" "${size[@]}" --config experiments/default.toml --jobs "$jobs"
  printf 'pool %-22s %-16s %5d s\n' "$task" "${size[*]}" "$SECONDS"
done
