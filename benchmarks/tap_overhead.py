"""Cost of seesay's engine against plain ``generate()`` on a random-weight LLaVA-architecture model.

For each image-token count (576 = one LLaVA-1.5 image, 2880 = five) one process builds the seeded model
once and times every mode in interleaved rounds, so that machine noise hits all modes alike; each round
runs the modes in its own seeded random order, so no mode always follows the same one (e.g. eager, which
allocates and frees gigabytes of attention at 2880 image tokens):
  * per-token decode time: the gaps between consecutive decode steps, read from a logits processor's
    time stamps (prefill excluded); a round's time is the median gap (a shared VM's interference
    lands on single steps as spikes; the decode steps themselves do the same work, so in a quiet
    round median and mean agree), reported as the median over rounds and the best (fastest) round:
    what the code costs when no other process interferes (timeit's advice on a noisy machine); the
    mean gaps are kept in the JSON;
  * time to the first token: from the call to the first token's scores (the prefill, and a two-phase
    method's passes before it), median over rounds;
  * forward passes per generated token;
  * peak memory: on GPU ``torch.cuda.max_memory_allocated`` per mode in the same process; on CPU one
    extra process per mode reports its peak RSS (glibc told to mmap blocks >= 64 KiB, so RSS tracks live
    tensors) and the peak above the RSS before generation ("work").
Ratios are against plain ``generate()`` in the same run, at the same batch size. ``--batch-sizes 1,16``
times batches of same-length prompts (each sample its own text and images); ms/token is then the time
of one decode step, which gives every sample of the batch its next token.

Modes: plain (sdpa ``generate``), loop (seesay's decode loop, no tap), tap (loop + tap recording every
layer's last-row attention per head), eager (``generate(output_attentions=True)`` with eager attention),
and the methods by name with their default configs (dualpd, dola, vcd, pai, m3id, icd, deco, var).

    python benchmarks/tap_overhead.py                    # CPU defaults (hidden 512, 8 layers, 8 heads)
    python benchmarks/tap_overhead.py --device cuda --dtype bfloat16 --hidden 4096 --layers 32 --heads 32
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import os
import random
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable

# Memory children only: glibc keeps freed blocks in its arenas, so peak RSS depends on allocation order;
# serving blocks >= 64 KiB with mmap makes it track live tensors (it also slows allocation: no timing there).
MEMORY_ENV = {"MALLOC_MMAP_THRESHOLD_": "65536", "MALLOC_ARENA_MAX": "1"}
MODES = ("plain", "loop", "tap", "eager", "dualpd", "dola", "vcd", "pai", "m3id", "icd", "deco", "var")
SHARED_ARGS = (
    "device",
    "dtype",
    "hidden",
    "layers",
    "heads",
    "kv_heads",
    "vocab",
    "text_tokens",
    "new_tokens",
    "repeats",
    "threads",
    "modes",
)


def build_model(args):
    import torch
    from transformers import CLIPVisionConfig, LlamaConfig, LlavaConfig, LlavaForConditionalGeneration

    vision = CLIPVisionConfig(
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=1,
        num_attention_heads=2,
        image_size=336,
        patch_size=14,
        projection_dim=64,
    )
    text = LlamaConfig(
        vocab_size=args.vocab,
        hidden_size=args.hidden,
        intermediate_size=args.hidden * 11 // 4,
        num_hidden_layers=args.layers,
        num_attention_heads=args.heads,
        num_key_value_heads=args.kv_heads or args.heads,
        max_position_embeddings=8192,
        pad_token_id=0,
        bos_token_id=1,
        eos_token_id=2,
    )
    config = LlavaConfig(
        vision_config=vision,
        text_config=text,
        image_token_index=3,
        image_seq_length=576,
        vision_feature_layer=-1,
        vision_feature_select_strategy="default",
    )
    torch.manual_seed(0)
    with torch.device(args.device):  # initialise on the target device (fast for 7B-shaped models on GPU)
        model = LlavaForConditionalGeneration(config)
    model = model.to(dtype=getattr(torch, args.dtype)).eval()
    model.generation_config.eos_token_id = None
    model.generation_config.pad_token_id = 0
    return model


def make_inputs(model, n_image_tokens: int, args, batch: int = 1):
    """``batch`` prompts of the same length (no padding): BOS, the image tokens, random text; each
    sample its own text and images."""
    import torch

    n_images, b = n_image_tokens // 576, batch
    g = torch.Generator().manual_seed(1)
    text = torch.randint(10, args.vocab, (b, args.text_tokens), generator=g)
    ids = torch.cat([torch.ones(b, 1, dtype=torch.long), torch.full((b, n_images * 576), 3), text], dim=1)
    pixel_values = torch.randn(b * n_images, 3, 336, 336, generator=g).to(model.dtype)
    return {
        "input_ids": ids.to(args.device),
        "attention_mask": torch.ones_like(ids).to(args.device),
        "pixel_values": pixel_values.to(args.device),
    }


def mode_runners(model, inputs) -> dict[str, Callable]:
    """name -> fn(n_new_tokens, logits_processor) returning the number of forward passes it made."""
    import torch

    from seesay.engine.adapters import get_adapter
    from seesay.engine.decoding import GenerationSettings, decode
    from seesay.engine.loading import LoadedModel, PreparedBatch
    from seesay.engine.tap import AttentionTap
    from seesay.methods import get_method

    adapter = get_adapter(model)

    def plain(n, procs):
        model.generate(**inputs, max_new_tokens=n, min_new_tokens=n, do_sample=False, logits_processor=procs)
        return n

    def eager(n, procs):
        model.set_attn_implementation({"text_config": "eager"})
        try:
            model.generate(
                **inputs,
                max_new_tokens=n,
                min_new_tokens=n,
                do_sample=False,
                logits_processor=procs,
                output_attentions=True,
                return_dict_in_generate=True,
            )
        finally:
            model.set_attn_implementation({"text_config": "sdpa"})
        return n

    def loop(n, procs, tap=None):
        out = decode(
            model,
            inputs,
            adapter=adapter,
            settings=GenerationSettings(max_new_tokens=n),
            tap=tap,
            logits_processor=procs,
        )
        return out.forward_passes

    loaded = LoadedModel(model, None, adapter)
    b = inputs["input_ids"].shape[0]
    batch = PreparedBatch(inputs=inputs, prompts=[""] * b, images=[[] for _ in range(b)])

    def method(name: str, **options) -> Callable:
        runner = get_method(name, **options)

        def run(n, procs):
            settings = GenerationSettings(max_new_tokens=n)
            return runner.generate(loaded, batch, settings, logits_processor=procs).forward_passes

        return run

    def icd(n, procs):
        # ICD's hook and branch as its plan builds them, with the role prefix as 8 more prompt tokens after
        # the image (the benchmark's model has no tokenizer to render "You are a confused object detector.")
        from seesay.engine.decoding import Branch
        from seesay.methods.icd import DISTURBED, ICDConfig, ICDStep

        ids = inputs["input_ids"]
        after_image = int((ids[0] == 3).nonzero()[-1]) + 1
        longer = torch.cat([ids[:, :after_image], ids[:, -8:], ids[:, after_image:]], dim=1)
        disturbed = {**inputs, "input_ids": longer, "attention_mask": torch.ones_like(longer)}
        out = decode(
            model,
            inputs,
            adapter=adapter,
            settings=GenerationSettings(max_new_tokens=n),
            hook=ICDStep(ICDConfig()),
            branches=(Branch(DISTURBED, disturbed),),
            logits_processor=procs,
        )
        return out.forward_passes

    return {
        "plain": plain,
        "loop": loop,
        "tap": lambda n, procs: loop(n, procs, AttentionTap(record="heads")),
        "eager": eager,
        "dualpd": method("dualpd"),
        "dola": method("dola"),
        "vcd": method("vcd"),
        "pai": method("pai"),
        "m3id": method("m3id"),
        "icd": icd,
        "deco": method("deco"),
        "var": method("var", sink_dims=(0, 1), tau=2.0),  # a random model has no sink dimensions of its own
    }


def median_interval(values: list[float], confidence: float = 0.95) -> dict[str, float]:
    """The median of ``values`` and a distribution-free interval for it: [x_(k), x_(n+1-k)] of the sorted
    values with the largest k whose coverage 1 - 2 P(Binomial(n, 1/2) < k) is still >= ``confidence``
    (k = 1 when even the full range covers less; the coverage is returned, never overstated)."""
    xs = sorted(values)
    n = len(xs)
    if n == 0:
        raise ValueError("median_interval needs at least one value")
    below = [math.comb(n, i) / 2**n for i in range(n + 1)]  # P(Binomial(n, 1/2) = i)

    def coverage(k: int) -> float:
        return 1 - 2 * sum(below[:k])

    k = 1
    while k + 1 <= (n + 1) // 2 and coverage(k + 1) >= confidence:
        k += 1
    return {"median": statistics.median(xs), "low": xs[k - 1], "high": xs[n - k], "coverage": coverage(k)}


def paired_ratios(per_token_all: dict[str, list[float]]) -> dict[str, dict[str, float]]:
    """Per mode: each round's per-token time over the same round's plain time, as ``median_interval``."""
    plain = per_token_all["plain"]
    return {
        mode: median_interval([t / p for t, p in zip(times, plain, strict=True)])
        for mode, times in per_token_all.items()
    }


def _sync(device: str) -> None:
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize()


def child_timing(args) -> dict:
    """All modes in one process, interleaved rounds; CUDA peak memory per mode."""
    import torch
    from transformers import LogitsProcessorList

    torch.set_num_threads(args.threads)
    model = build_model(args)
    inputs = make_inputs(model, args.image_tokens, args, args.batch)
    runners = mode_runners(model, inputs)
    modes = args.modes.split(",")
    stamps: list[float] = []

    def stamp(input_ids, scores):
        _sync(args.device)
        stamps.append(time.perf_counter())
        return scores

    procs = LogitsProcessorList([stamp])
    per_token: dict[str, list[float]] = {m: [] for m in modes}
    first_token: dict[str, list[float]] = {m: [] for m in modes}
    mean_gap: dict[str, list[float]] = {m: [] for m in modes}
    after: dict[str, list[str | None]] = {m: [] for m in modes}  # the mode run just before, per round
    previous = None
    passes: dict[str, float] = {}
    peak: dict[str, int] = {}
    n = 1 + args.new_tokens
    with torch.no_grad():
        for mode in modes:  # warm-up, and CUDA peak memory of one full run per mode
            if args.device.startswith("cuda"):
                torch.cuda.empty_cache()
                torch.cuda.reset_peak_memory_stats()
                base = torch.cuda.memory_allocated()
            runners[mode](n, procs)
            if args.device.startswith("cuda"):
                _sync(args.device)
                peak[mode] = torch.cuda.max_memory_allocated()
                peak[mode + ":work"] = peak[mode] - base
        for round_ in range(args.repeats):
            order = random.Random(round_).sample(modes, len(modes))  # no mode always follows the same one
            for mode in order:
                stamps.clear()
                _sync(args.device)
                start = time.perf_counter()
                passes[mode] = runners[mode](n, procs) / n
                first_token[mode].append(stamps[0] - start)
                gaps = [b - a for a, b in itertools.pairwise(stamps)]
                per_token[mode].append(statistics.median(gaps))
                mean_gap[mode].append(statistics.fmean(gaps))
                after[mode].append(previous)
                previous = mode
    return {
        "per_token_s": {m: statistics.median(v) for m, v in per_token.items()},
        "per_token_best_s": {m: min(v) for m, v in per_token.items()},
        "per_token_all": per_token,
        "per_token_paired": paired_ratios(per_token),
        "first_token_s": {m: statistics.median(v) for m, v in first_token.items()},
        "first_token_all": first_token,
        "mean_gap_all": mean_gap,
        "ran_after": after,
        "passes_per_token": passes,
        "cuda_peak": peak,
        "seq_len": int(inputs["input_ids"].shape[1]),
    }


def child_memory(args) -> dict:
    """Peak RSS of one mode in a fresh process (CPU)."""
    import torch
    from transformers import LogitsProcessorList

    torch.set_num_threads(args.threads)
    model = build_model(args)
    inputs = make_inputs(model, args.image_tokens, args, args.batch)
    runner = mode_runners(model, inputs)[args.memory_mode]
    with open("/proc/self/statm") as f:
        before = int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    with torch.no_grad():
        runner(1 + args.new_tokens, LogitsProcessorList())
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    return {"peak": peak, "work": max(0, peak - before)}


def _child(args, extra: list[str]) -> dict:
    cmd = [sys.executable, __file__]
    for k in SHARED_ARGS:
        cmd += [f"--{k.replace('_', '-')}", str(getattr(args, k))]
    extra = [str(x) for x in extra]
    env = {**os.environ, "PYTHONWARNINGS": "ignore", **(MEMORY_ENV if "--memory-mode" in extra else {})}
    proc = subprocess.run(cmd + extra, capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        raise SystemExit(f"child {' '.join(extra)} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


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
    ap.add_argument("--new-tokens", type=int, default=32)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--image-token-counts", default="576,2880")
    ap.add_argument(
        "--batch-sizes",
        default="1",
        help="comma-separated prompts per batch, e.g. 1,16 (same-length prompts)",
    )
    ap.add_argument("--modes", default=",".join(MODES))
    ap.add_argument("--json-out", help="also write all measurements as JSON here")
    ap.add_argument("--image-tokens", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--batch", type=int, default=1, help=argparse.SUPPRESS)
    ap.add_argument("--memory-mode", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.image_tokens is not None:
        print(json.dumps(child_memory(args) if args.memory_mode else child_timing(args)))
        return

    modes = args.modes.split(",")
    if any(m not in MODES for m in modes) or "plain" not in modes:
        ap.error(f"--modes must include plain and name only {', '.join(MODES)}; got {args.modes}")
    results = {}
    batch_sizes = [int(x) for x in args.batch_sizes.split(",")]
    for batch in batch_sizes:
        for n_img in [int(x) for x in args.image_token_counts.split(",")]:
            child = ["--image-tokens", n_img, "--batch", batch]
            key = f"{n_img}" if batch == 1 else f"{n_img}x{batch}"
            try:
                res = _child(args, child)
            except SystemExit as err:  # e.g. out of memory at this size: keep the other sizes' results
                print(f"  {n_img} image tokens, batch {batch}: {err}", file=sys.stderr, flush=True)
                results[key] = {"failed": str(err)[-3000:], "batch": batch, "image_tokens": n_img}
                save_json(args, results)
                continue
            if args.device.startswith("cuda"):
                res["memory"] = {
                    m: {"peak": res["cuda_peak"][m], "work": res["cuda_peak"][m + ":work"]} for m in modes
                }
            else:
                res["memory"] = {m: _child(args, [*child, "--memory-mode", m]) for m in modes}
            results[key] = {**res, "batch": batch, "image_tokens": n_img}
            save_json(args, results)  # per size: a run cut by a time limit keeps the finished ones
            print(f"  done: {n_img} image tokens, batch {batch}", file=sys.stderr, flush=True)

    print(
        f"\nrandom-weight LLaVA: hidden {args.hidden}, {args.layers} layers, {args.heads} heads, "
        f"{args.dtype} on {args.device}; {args.new_tokens} new tokens, "
        f"median and best of {args.repeats} rounds"
    )
    show_batch = batch_sizes != [1]
    print(
        (f"{'batch':>5} " if show_batch else "")
        + f"{'image tokens':>12} {'mode':>7} {'ms/token':>9} {'x plain':>8} {'best ms':>8} {'x plain':>8} "
        f"{'1st tok ms':>10} {'x plain':>8} "
        f"{'passes/tok':>10} {'peak MiB':>9} {'x plain':>8} {'work MiB':>9} {'x plain':>8}"
    )
    for res in results.values():
        lead = (f"{res['batch']:>5} " if show_batch else "") + f"{res['image_tokens']:>12}"
        if "failed" in res:
            print(f"{lead}  failed")
            continue
        t, best, mem = res["per_token_s"], res["per_token_best_s"], res["memory"]
        first = res["first_token_s"]
        for m in modes:
            work_ratio = mem[m]["work"] / mem["plain"]["work"] if mem["plain"]["work"] else float("nan")
            print(
                f"{lead} {m:>7} {t[m] * 1e3:>9.2f} {t[m] / t['plain']:>8.2f} "
                f"{best[m] * 1e3:>8.2f} {best[m] / best['plain']:>8.2f} "
                f"{first[m] * 1e3:>10.0f} {first[m] / first['plain']:>8.2f} "
                f"{res['passes_per_token'][m]:>10.2f} {mem[m]['peak'] / 2**20:>9.0f} "
                f"{mem[m]['peak'] / mem['plain']['peak']:>8.2f} {mem[m]['work'] / 2**20:>9.0f} "
                f"{work_ratio:>8.2f}"
            )

    finished = [r for r in results.values() if "failed" not in r]
    if finished and args.repeats > 1:
        coverage = finished[0]["per_token_paired"]["plain"]["coverage"]
        print(
            f"\nper-token time x plain, paired by round (a round's time over the same round's plain time):\n"
            f"median [{coverage:.1%} distribution-free interval of the median] over {args.repeats} rounds"
        )
        heads = [f"{r['image_tokens']}" + (f", batch {r['batch']}" if show_batch else "") for r in finished]
        print(f"{'mode':>7} " + " ".join(f"{h:>19}" for h in heads))
        for m in [m for m in modes if m != "plain"]:
            cells = []
            for r in finished:
                c = r["per_token_paired"][m]
                cells.append(f"{c['median']:.2f} [{c['low']:.2f}-{c['high']:.2f}]")
            print(f"{m:>7} " + " ".join(f"{c:>19}" for c in cells))


def save_json(args, results: dict) -> None:
    """``--json-out``: the arguments and every finished size's measurements (replaced atomically)."""
    if not args.json_out:
        return
    shown = {k: v for k, v in vars(args).items() if k not in ("image_tokens", "batch", "memory_mode")}
    path = args.json_out
    special = os.path.exists(path) and not os.path.isfile(path)  # /dev/stdout, a pipe: written in place
    tmp = path if special else f"{path}.part"
    with open(tmp, "w") as f:
        json.dump({"args": shown, "results": results}, f, indent=1)
    if not special:
        os.replace(tmp, path)


if __name__ == "__main__":
    main()
