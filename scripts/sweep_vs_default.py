"""Two points of one `seesay sweep` paired against each other (not against base): does a point beat the
default? Prints the difference, its 95% paired-bootstrap interval and McNemar's exact p on the primary
metric. docs/methods/dualpd.md and vea.md quote its output.

    python scripts/sweep_vs_default.py runs/dev_sweeps/dualpd_static_layer static_layer=7 static_layer=none
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from seesay.eval.runner import read_done
from seesay.eval.stats import paired_difference


def scores(sweep: Path, point: str, method: str, metric: str) -> dict[str, float]:
    bench = json.loads((sweep / "sweep.json").read_text())["bench"]
    rows = read_done(sweep / "points" / point / bench / method / "predictions.jsonl", repair=False)
    return {i: float(r["score"][metric]) for i, r in rows.items() if r["score"].get(metric) is not None}


def main() -> None:
    sweep, point, default = Path(sys.argv[1]), sys.argv[2], sys.argv[3]
    info = json.loads((sweep / "sweep.json").read_text())
    a = scores(sweep, point, info["method"], info["metric"])
    b = scores(sweep, default, info["method"], info["metric"])
    ids = sorted(a.keys() & b.keys())
    d = paired_difference([b[i] for i in ids], [a[i] for i in ids])
    p = "" if d.p_value is None else f" p {d.p_value:.3g}"
    print(f"{point} vs {default}: {100 * d.diff:+.1f} [{100 * d.low:+.1f}, {100 * d.high:+.1f}]{p} (n {d.n})")


if __name__ == "__main__":
    main()
