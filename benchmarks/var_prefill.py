"""VAR's time to the first token (the prefill) against plain ``generate()``, with the tap's
``scale_from`` (explicit scores only from the first text row after the image) and without it
(``scale_from=0``: every prompt row, as before 2026-12-07). Same seeded random-weight model as
``tap_overhead.py``, one new token, best of ``--repeats``; the two VAR runs give the same tokens.

    python benchmarks/var_prefill.py
"""

from __future__ import annotations

import argparse
import dataclasses
import time

import tap_overhead as tb  # the same model and inputs (this folder is on sys.path when run as a script)


def main() -> None:
    import torch

    from seesay.engine.adapters import get_adapter
    from seesay.engine.decoding import GenerationSettings, decode
    from seesay.engine.loading import LoadedModel, PreparedBatch
    from seesay.methods import get_method

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--image-token-counts", default="576,2880")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    shape = argparse.Namespace(  # tap_overhead.py's CPU defaults
        device="cpu", dtype="float32", hidden=512, layers=8, heads=8, kv_heads=None, vocab=32000,
        text_tokens=40,
    )  # fmt: skip
    model = tb.build_model(shape)
    adapter = get_adapter(model)
    loaded = LoadedModel(model, None, adapter)
    method = get_method("var", sink_dims=(0, 1), tau=2.0)  # as tap_overhead.py: a random model has no sinks
    print(f"{'image tokens':>12} {'plain s':>8} {'var s':>8} {'x plain':>8} ", end="")
    print(f"{'all rows s':>11} {'x plain':>8}")
    with torch.no_grad():
        for n in [int(x) for x in args.image_token_counts.split(",")]:
            inputs = tb.make_inputs(model, n, shape)
            batch = PreparedBatch(inputs=inputs, prompts=[""], images=[[]])

            def plain(inputs=inputs):
                start = time.perf_counter()
                model.generate(**inputs, max_new_tokens=1, do_sample=False)
                return time.perf_counter() - start, None

            def var(scale_from=None, inputs=inputs, batch=batch):
                plan = method.plan(loaded, batch)  # its own sink marks
                tap = plan.tap if scale_from is None else dataclasses.replace(plan.tap, scale_from=scale_from)
                with plan.contexts[0]:
                    start = time.perf_counter()
                    out = decode(
                        model, inputs, adapter=adapter, settings=GenerationSettings(max_new_tokens=1), tap=tap
                    )
                    return time.perf_counter() - start, out.sequences

            runs = {"plain": plain, "var": var, "all": lambda: var(0)}
            best = {name: float("inf") for name in runs}
            for _ in range(1 + args.repeats):  # the first round warms up
                tokens = {}
                for name, run in runs.items():
                    seconds, tokens[name] = run()
                    best[name] = min(best[name], seconds)
                assert torch.equal(tokens["var"], tokens["all"])
            print(
                f"{n:>12} {best['plain']:>8.2f} {best['var']:>8.2f} {best['var'] / best['plain']:>8.2f} "
                f"{best['all']:>11.2f} {best['all'] / best['plain']:>8.2f}"
            )


if __name__ == "__main__":
    main()
