#!/usr/bin/env bash
# Regenerate the protocol tables of issues 6 and 8 in results/, most needed first, on JOBS
# workers (default 2). Every step reads and extends the per-network scores in results/scores,
# so a step killed (or a session ended) resumes where it stopped, and a step whose scores are
# all there rewrites its table in seconds on any machine. Commit results/ after a run.
#
#   1. results/heldout_nb201: 1,000 held-out NB201 networks per dataset, the discovered proxies
#      (the published proxy and the one before it, eznas_best_v6, scored by the engine from their
#      .json records) and every baseline;
#   2. results/heldout_nds: every network of the four held-out NDS spaces, the same proxies;
#   3. results/heldout_naslib: 100 held-out NB101 and 100 held-out NB301 networks, the same proxies;
#   4. results/baselines: every baseline, the same NB201 networks and every NDS space (issue 6);
#   5. results/search_b1000: zero-shot random search, budget 1,000, 5 seeds, three NB201 datasets,
#      with eznas_best.py, AZ-NAS and params; then results/search_b1000_zico,
#      ZiCo the same way (the most expensive of the baselines to score, so last).
#
# The held-out networks are those the run behind results/proxies/eznas_best.json never saw (its
# pools are drawn again from its config). Hours on 2 CPU cores (README: results).
#
#   bash experiments/protocol_tables.sh [JOBS]
set -euo pipefail
jobs="${1:-2}"
run=results/proxies/eznas_best.json
proxies=(--proxy results/proxies/eznas_best.json --proxy results/proxies/eznas_best_v6.json)
common=(--jobs "$jobs" --scores-dir results/scores)
python experiments/heldout.py --run "$run" "${proxies[@]}" --n 1000 "${common[@]}" \
  --tasks nb201:cifar10,nb201:ImageNet16-120,nb201:cifar100 --out results/heldout_nb201
python experiments/heldout.py --run "$run" "${proxies[@]}" "${common[@]}" \
  --tasks nds:ENAS_in,nds:PNAS_in,nds:ResNeXt-A_in,nds:ResNeXt-B_in --out results/heldout_nds
python experiments/heldout.py --run "$run" "${proxies[@]}" --space-n nb101=100 --space-n nb301=100 "${common[@]}" \
  --tasks nb101:cifar10,nb301:cifar10 --out results/heldout_naslib
python experiments/baselines.py --n 1000 --seed 0 --exclude-run "$run" --space-n nb101=100 --space-n nb301=100 \
  "${common[@]}"
search=(--budget 1000 --seeds 5 --strategies random "${common[@]}")
python experiments/search.py --proxies results/proxies/eznas_best.py,az_nas,params "${search[@]}" --out results/search_b1000
python experiments/search.py --proxies zico "${search[@]}" --out results/search_b1000_zico
