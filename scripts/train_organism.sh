#!/usr/bin/env bash
# The bundled demo model (src/seesay/demo/model), all three stages, replayable step for step:
#
#   bash scripts/train_organism.sh OUT [extra train_demo_model.py options, e.g. --device cuda]
#
# 1. the base recipe from scratch: seed 0, the script's defaults, stopped at step 2,667 of 3,000 (where
#    its 58-minute budget stopped the bundled run; 58.1 min on 2 CPU cores);
# 2. colour uncertainty: 400 more steps on the biased split with every image's hue rotated region-wise
#    (--hue-jitter 80, degrees), so the answer learns to weigh a seen colour against the colour prior
#    (6.6 min);
# 3. the look stage: 16 colour-balanced look rows per step that carry the attention guidance, the patch
#    loss and a logit-lens answer loss at one middle layer (weight 0.2), but train no answer at the
#    output, still hue-jittered, 600 steps (15.0 min).
# docs/demo.md gives what each stage measured and the probes behind the choices (dev seed only).
# Stages 1 and 2 are kept next to OUT (OUT.stage1, OUT.stage2); OUT/training_log.json nests their logs.
set -euo pipefail
if [[ $# -lt 1 ]]; then
    echo "usage: bash scripts/train_organism.sh OUT [train_demo_model.py options]" >&2
    exit 2
fi
out=$1
shift
train=(python "$(dirname "$0")/train_demo_model.py" --max-minutes 100000)
"${train[@]}" --out "$out.stage1" --stop-at-step 2667 "$@"
"${train[@]}" --out "$out.stage2" --init-from "$out.stage1" --train-samples 30000 \
    --steps 400 --warmup 20 --lr 6e-4 --hue-jitter 80 "$@"
"${train[@]}" --out "$out" --init-from "$out.stage2" --train-samples 30000 \
    --steps 0 --look-images 16 --look-lens-weight 0.2 --look-steps 600 --look-lr 6e-4 --look-warmup 20 \
    --stop-at-step 600 --hue-jitter 80 "$@"
