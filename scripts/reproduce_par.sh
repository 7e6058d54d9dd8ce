#!/usr/bin/env bash
# Reproduce every attribute-recognition number in docs/results.md (about 1 h on 2 CPU cores).
# Needs ../shared/data/PETA. Training caches encoder features under cache/features/.
set -euo pipefail
cd "$(dirname "$0")/.."
PL=.venv/bin/personlens
PETA=${PETA:-../shared/data/PETA}
common=(--dataset peta --root "$PETA" --partition 0)

# Shipped model: cross-attention head, encoder stages 8-15 fine-tuned (named variant "unfrozen top")
$PL train attributes "${common[@]}" --stage 8 --head cross_attention --unfreeze-top --out runs/par-ca-top
$PL calibrate attributes "${common[@]}" --weights runs/par-ca-top --objective joint
# Ablations on the same cached features, encoder frozen
$PL train attributes "${common[@]}" --stage 8 --head cross_attention --frozen --out runs/par-ca-frozen
$PL train attributes "${common[@]}" --stage 8 --head linear --frozen --out runs/par-linear-frozen

for run in par-ca-top par-ca-frozen par-linear-frozen; do
  [ "$run" = par-ca-top ] || $PL calibrate attributes "${common[@]}" --weights runs/$run --objective joint
  $PL eval attributes "${common[@]}" --split test --weights runs/$run --json runs/$run/test.json
done
# The shipped copy must give the same test numbers as runs/par-ca-top
$PL eval attributes "${common[@]}" --split test --json runs/shipped-test.json
