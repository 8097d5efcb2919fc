"""Write docs/sweeps.md from the sweeps of scripts/run_dev_sweeps.sh (tables from each sweep.json, plots
copied to docs/sweeps/). Usage: python scripts/sweeps_doc.py [runs/dev_sweeps] [minutes it took]"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

from seesay.eval.sweep import markdown_table

ORDER = [
    ("dualpd_static_layer", "DualPD: a static basic layer at each depth against the dynamic choice (none)"),
    ("dualpd_gamma", "DualPD: head decay gamma at rho = 0.15 (gamma = 1: no filtering)"),
    ("dualpd_rho", "DualPD: share of heads suppressed per layer"),
    ("dualpd_shift_metric", "DualPD: the shift metric between adjacent layers' visual attention"),
    ("dualpd_pair_side", "DualPD: which layer of the most-shifting pair is the basic layer"),
    ("dualpd_contrast", "DualPD: the contrast form"),
    ("dualpd_filter_rows", "DualPD: head filtering of the last row vs every prompt row at prefill"),
    ("vea_layer_set", "VEA: where L_VG comes from (profiled on the dev split, all, halves)"),
    ("vea_sigma", "VEA: blur sigma (fraction of the shorter side; 0 = no blur)"),
    ("vea_alpha", "VEA: brightness floor alpha (1 = no highlight)"),
    ("vea_lam", "VEA: spike threshold lambda of Eq. 2 (1000: effectively no denoising)"),
    ("vea_ablations", "VEA: the paper's ablation rows (denoise, smooth, highlight off = 'Inst')"),
]


def main() -> None:
    root = Path(sys.argv[1] if len(sys.argv) > 1 else "runs/dev_sweeps")
    minutes = sys.argv[2] if len(sys.argv) > 2 else "?"
    docs = Path(__file__).resolve().parents[1] / "docs"
    plots = docs / "sweeps"
    plots.mkdir(exist_ok=True)
    parts = [
        "# Sweeps of the papers' ablations on the demo model (dev split)\n",
        "Made by `bash scripts/run_dev_sweeps.sh` (then `python scripts/sweeps_doc.py`), "
        f"{minutes} minutes on 2 CPU cores. Data: the synthetic benchmark's dev seed 20260602 (300 iid + "
        "300 counterfactual questions; never the demo's held-out seed), the bundled model, Visual-CoT "
        "exact match (one-word answers), 95% Wilson intervals, paired differences from base with 95% "
        "paired-bootstrap intervals and McNemar's exact p. What the numbers decide is in each method's doc "
        "(docs/methods/); the organism is a 3 M-parameter toy, so they say how the knobs act on it, not "
        "on a 7B model.\n",
    ]
    for name, title in ORDER:
        sweep = root / name / "sweep.json"
        if not sweep.exists():
            continue
        parts.append(f"## {title}\n")
        parts.append(f"`{name}`\n")
        parts.append(markdown_table(sweep))
        for png in sorted((root / name).glob("sweep_*.png")):
            target = plots / f"{name}__{png.name}"
            shutil.copyfile(png, target)
            parts.append(f"![{name} {png.stem}](sweeps/{target.name})\n")
    (docs / "sweeps.md").write_text("\n".join(parts))
    print(f"wrote {docs / 'sweeps.md'}")


if __name__ == "__main__":
    main()
