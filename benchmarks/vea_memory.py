"""Memory of VEA's attribution pass against a plain forward pass and eager ``output_attentions``.

Same seeded random-weight LLaVA-architecture model as ``tap_overhead.py``. One fresh process per mode
(CPU: peak RSS with glibc told to mmap blocks >= 64 KiB, and the peak above the RSS before the pass; GPU:
``torch.cuda.max_memory_allocated``). Modes:
  forward      the base model's forward pass of the prompt (sdpa, no KV cache)       -- the reference
  attribution  the same pass with the tap reading the last row of EVERY layer (seesay.methods.vea.attribution)
  eager        eager attention with output_attentions (the VEA reference code's way)

    python benchmarks/vea_memory.py                       # 2880 image tokens on CPU
    python benchmarks/vea_memory.py --device cuda --dtype bfloat16 --hidden 4096 --layers 32 --heads 32
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from tap_overhead import MEMORY_ENV, build_model, make_inputs

MODES = ("forward", "attribution", "eager")


def child(args) -> dict:
    import torch

    from seesay.engine.adapters import get_adapter
    from seesay.engine.loading import LoadedModel, PreparedBatch
    from seesay.methods.vea.attribution import attention_rows

    torch.set_num_threads(args.threads)
    model = build_model(args)
    inputs = make_inputs(model, args.image_tokens, args)
    loaded = LoadedModel(model, None, get_adapter(model))
    batch = PreparedBatch(inputs=inputs, prompts=[""], images=[[]])
    cuda = args.device.startswith("cuda")

    def run():
        with torch.no_grad():
            if args.mode == "forward":
                loaded.adapter.base_model(**inputs, use_cache=False)
            elif args.mode == "attribution":
                attention_rows(loaded, batch, range(loaded.adapter.num_layers))
            else:
                model.set_attn_implementation({"text_config": "eager"})
                loaded.adapter.base_model(**inputs, use_cache=False, output_attentions=True)

    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.memory_allocated()
    else:
        with open("/proc/self/statm") as f:
            before = int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    t0 = time.perf_counter()
    run()
    if cuda:
        torch.cuda.synchronize()
        peak = torch.cuda.max_memory_allocated()
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    return {
        "mode": args.mode,
        "seconds": time.perf_counter() - t0,
        "peak": peak,
        "work": max(0, peak - before),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--dtype", default="float32")
    ap.add_argument("--hidden", type=int, default=512)
    ap.add_argument("--layers", type=int, default=8)
    ap.add_argument("--heads", type=int, default=8)
    ap.add_argument("--kv-heads", type=int, default=0)
    ap.add_argument("--vocab", type=int, default=32000)
    ap.add_argument("--text-tokens", type=int, default=40)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--image-tokens", type=int, default=2880)
    ap.add_argument("--mode", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.mode:
        print(json.dumps(child(args)))
        return
    rows = []
    for mode in MODES:
        cmd = [sys.executable, __file__, "--mode", mode]
        for k in (
            "device",
            "dtype",
            "hidden",
            "layers",
            "heads",
            "kv_heads",
            "vocab",
            "text_tokens",
            "threads",
            "image_tokens",
        ):
            cmd += [f"--{k.replace('_', '-')}", str(getattr(args, k))]
        env = {**os.environ, "PYTHONWARNINGS": "ignore", **MEMORY_ENV}
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
        if proc.returncode != 0:
            raise SystemExit(f"{mode} failed:\n{proc.stderr[-3000:]}")
        rows.append(json.loads(proc.stdout.strip().splitlines()[-1]))
    print(
        f"random-weight LLaVA: hidden {args.hidden}, {args.layers} layers, {args.heads} heads, "
        f"{args.dtype} on {args.device}; {args.image_tokens} image tokens, one prompt"
    )
    print(f"{'mode':>12} {'seconds':>8} {'peak MiB':>9} {'x forward':>9} {'work MiB':>9} {'x forward':>9}")
    ref = rows[0]
    for r in rows:
        print(
            f"{r['mode']:>12} {r['seconds']:>8.2f} {r['peak'] / 2**20:>9.0f} {r['peak'] / ref['peak']:>9.2f} "
            f"{r['work'] / 2**20:>9.0f} {r['work'] / max(ref['work'], 1):>9.2f}"
        )


if __name__ == "__main__":
    main()
