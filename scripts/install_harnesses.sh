#!/usr/bin/env bash
# The harnesses seesay runs inside, for their tests on a CPU-only machine (CI; tests/test_lmms_eval.py,
# tests/test_ray_recipe.py; docs/evaluation.md):
# - lmms-eval's CLI without its GPU/video/logging stack (torchvision, opencv, av, wandb, ... which would
#   pull a CUDA build of torch), plus what its generate_until path imports. `pip install -e
#   ".[lmms-eval]"` installs its full set instead. filelock < 4: lmms-eval 0.7.3 imports filelock._api,
#   gone in filelock 4.
# - Ray Data, for the map_batches recipe.
set -euo pipefail
python3 -m pip install -q --no-deps "lmms-eval==0.7.3"
python3 -m pip install -q loguru sacrebleu evaluate pytz tenacity pytablewriter "filelock<4" "ray[data]>=2.40"
