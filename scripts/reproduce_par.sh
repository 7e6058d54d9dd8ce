#!/usr/bin/env bash
# Reproduce every attribute-recognition number in docs/results.md (~1.5 h on 2 CPU cores).
# Needs ../shared/data/PETA. Training caches encoder features under cache/features/.
set -euo pipefail
cd "$(dirname "$0")/.."
PL=.venv/bin/personlens
PETA=${PETA:-../shared/data/PETA}
common=(--dataset peta --root "$PETA" --partition 0)

# The shipped model: cross-attention head, encoder stages 8-15 fine-tuned ("unfrozen top" variant)
$PL train attributes "${common[@]}" --stage 8 --head cross_attention --unfreeze-top --out runs/par-ca-top
$PL calibrate attributes "${common[@]}" --weights runs/par-ca-top --objective joint
$PL eval attributes "${common[@]}" --split test --weights runs/par-ca-top --out runs/par-ca-top/test.json
# The copy shipped in the package gives the same test numbers
$PL eval attributes "${common[@]}" --split test --out runs/shipped-test.json
# Ablation on the same cached features: linear probe vs cross-attention (frozen), vs shipped
.venv/bin/python scripts/ablate_par.py --root "$PETA" --json docs/results/ablation_par.json
# Speed
.venv/bin/python benchmarks/bench_attributes.py --real --precision bf16 --json docs/results/bench_attributes.json
.venv/bin/python benchmarks/bench_attributes.py --real --precision bf16 --no-flip-tta --json docs/results/bench_attributes_no_tta.json
