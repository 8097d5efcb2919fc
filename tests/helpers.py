"""Helpers shared by tests: rebuild the model-input pictures from pixel_values."""

from __future__ import annotations

import torch


def stitch(tiles: torch.Tensor, rows: int, cols: int) -> torch.Tensor:
    """[rows*cols, C, t, t] tiles in raster order -> [C, rows*t, cols*t]."""
    c, t = tiles.shape[1], tiles.shape[-1]
    return tiles.reshape(rows, cols, c, t, t).permute(2, 0, 3, 1, 4).reshape(c, rows * t, cols * t)


def block_canvases(loaded, inputs, layout) -> list[torch.Tensor]:
    """The model-input picture each block of one image's layout was cut from, as [C, H, W]."""
    family, pv = loaded.family, inputs["pixel_values"]
    if family in ("llava", "gemma3"):
        return [pv[0]]
    if family == "llava_next":
        base, tiles = pv[0, 0], pv[0, 1:]
        w, h = layout.blocks[1].input_size
        t = tiles.shape[-1]
        return [base, stitch(tiles[: (h // t) * (w // t)], h // t, w // t)]
    if family in ("qwen2_vl", "qwen2_5_vl"):
        _, gh, gw = inputs["image_grid_thw"][0].tolist()
        ip = loaded.processor.image_processor
        m, p, tp = ip.merge_size, ip.patch_size, ip.temporal_patch_size
        x = pv.reshape(1, gh // m, gw // m, m, m, 3, tp, p, p).permute(0, 6, 5, 1, 3, 7, 2, 4, 8)
        return [x.reshape(tp, 3, gh * p, gw * p)[0]]
    if family == "internvl":
        n_tiles = len(layout.blocks)
        if n_tiles == 1:
            return [pv[0]]
        w, h = layout.blocks[0].input_size
        t = pv.shape[-1]
        grid = stitch(pv[: n_tiles - 1], h // t, w // t)
        return [grid] * (n_tiles - 1) + [pv[n_tiles - 1]]
    raise AssertionError(family)


def assert_batch_equals_alone(family: str, method: str, settings) -> None:
    """``method``'s answers for the three conftest questions, asked as one left-padded batch, equal its
    answers asked one at a time on the tiny ``family`` model."""
    import seesay
    from tests.conftest import QUESTIONS, images, loaded_tiny

    loaded = loaded_tiny(family)
    imgs = images(3)
    batch = seesay.ask_batch(loaded, imgs, QUESTIONS, method=method, settings=settings)
    for i, answer in enumerate(batch):
        alone = seesay.ask_batch(loaded, [imgs[i]], [QUESTIONS[i]], method=method, settings=settings)[0]
        assert answer.token_ids == alone.token_ids, (family, i)


def decode_with_other_branch(loaded, batch, settings, **decode_kwargs):
    """Decode ``batch`` with a branch "other" (its prompt with "You may be wrong." before the question,
    left padded: ICD's kind) whose logits the hook contrasts with weight 0.5. Returns (the output, per
    step (the batch's final hidden state, the branch's))."""
    from seesay.engine.decoding import Branch, StepState, decode
    from seesay.engine.variants import insert_before_question, with_prompts

    branch = Branch("other", with_prompts(loaded, batch, insert_before_question(batch, "You may be wrong.")))
    seen: list[tuple[torch.Tensor, torch.Tensor]] = []

    def hook(state: StepState) -> torch.Tensor:
        seen.append((state.final_hidden.clone(), state.branches["other"].clone()))
        return state.logits - 0.5 * loaded.adapter.logits_from_hidden(state.branches["other"]).float()

    out = decode(
        loaded.model, batch.inputs, adapter=loaded.adapter, settings=settings, hook=hook, branches=[branch],
        **decode_kwargs,
    )  # fmt: skip
    return out, seen
