#!/usr/bin/env bash
# The papers' ablations as `seesay sweep` runs on the bundled demo model, on a DEV split of the synthetic
# benchmark (seed 20260602, the demo's dev seed: never its held-out seed 20260601, never a training seed).
# Writes runs/dev_sweeps/<name>/ (resumable) and docs/sweeps.md's tables and plots come from them.
#
#   bash scripts/run_dev_sweeps.sh            # 2 CPU cores: see docs/sweeps.md for the measured time
set -euo pipefail
OUT=${OUT:-runs/dev_sweeps}
N=${N:-300}  # questions per split (iid + counterfactual in one file)
mkdir -p "$OUT"
python - "$OUT" "$N" <<'EOF'
import json, sys
from pathlib import Path
from seesay.demo import synthetic
from seesay.demo import DEV_SEED

out, n = Path(sys.argv[1]) / "data", int(sys.argv[2])
rows = []
for split in ("iid", "counterfactual"):
    path = synthetic.write_split(out, split, n, seed=DEV_SEED)
    rows += path.read_text().splitlines()
(out / "dev.jsonl").write_text("\n".join(rows) + "\n")
EOF
DATA="$OUT/data/dev.jsonl"
COMMON=(--bench visual_cot --data "$DATA" --batch-size 100 --max-new-tokens 3)

seesay profile --data "$DATA" --n $((2 * N)) --batch-size 50 --out "$OUT/dev_profile.json"

sweep() { name=$1; shift; seesay sweep "${COMMON[@]}" --out "$OUT/$name" "$@"; }

# DualPD (arXiv 2601.07359): the basic layer, the head filter, the shift metric, the pair side, the contrast
sweep dualpd_static_layer --method dualpd --grid static_layer=1,3,5,7,9,none
sweep dualpd_gamma        --method dualpd --grid gamma=0,0.5,0.9,1
sweep dualpd_rho          --method dualpd --grid rho=0,0.15,0.3,0.5
sweep dualpd_shift_metric --method dualpd --grid shift_metric=hellinger,js,kl
sweep dualpd_pair_side    --method dualpd --grid pair_side=later,earlier
sweep dualpd_contrast     --method dualpd --grid contrast=dola,logits,literal,residual,none
sweep dualpd_filter_rows  --method dualpd --grid filter_rows=last,prompt --grid gamma=0.9,0.5

# VEA (arXiv 2510.17771): layer sets, Eq. 2-4 knobs, and the paper's ablation rows. The demo model was
# trained on bare questions, so every point uses prompt=question (the VEA / QA instructions are words it
# has never seen); the prompt rows of the paper's ablation table cannot be run on it.
VEA=(--method vea --set prompt=question --set "profile=$OUT/dev_profile.json")
sweep vea_layer_set "${VEA[@]}" --grid layer_set=profiled,all,first_half,second_half
sweep vea_sigma     "${VEA[@]}" --grid sigma=0,0.1,0.25,0.5,1
sweep vea_alpha     "${VEA[@]}" --grid alpha=0.25,0.5,0.75,1
sweep vea_lam       "${VEA[@]}" --grid lam=2,5,10,1000
sweep vea_ablations "${VEA[@]}" --grid denoise=true,false --grid smooth=true,false --grid highlight=true,false
