"""Train seesay's tiny demo VLM (the model organism) from scratch on the synthetic "seesay shapes" split.

A LLaVA-architecture model with the Hugging Face classes: a CLIP-style vision tower (64 x 64 images,
8-px patches -> 64 image tokens, 3 layers), a 2-layer MLP projector and a Llama-style language model
(12 layers, 8 heads of width 16), a word-level tokenizer over the benchmark's vocabulary, a CLIP image
processor and a chat template (``USER: <image>\n{question} ASSISTANT: {answer}</s>``). Saved with
``save_pretrained`` together with its processor, so ``seesay.load_model(out)`` / ``from_pretrained`` load
it like any hub model. Reproducible from ``--seed`` (data, extra questions, init, order, augmentation):
the same seed gives the same weights on the same machine.

What the organism is for: it must *see right and say wrong*, as large VLMs do: deep layers attend to the
evidence, while the answer often follows the language prior (the training split's colour prior,
``--prior``). The recipe (our choices, made to fit 60 minutes on 2 CPU cores; docs/demo.md gives the
probes behind them):

* **Several questions per image.** Each training image carries its own question (the record of
  ``synthetic.generate("train", ...)``) and ``--questions-per-image - 1`` more about the same scene, as a
  multi-turn conversation (``... ASSISTANT: a1</s>USER: q2 ASSISTANT: a2</s>...``). The first turn is the
  exact single-turn prompt used at inference; the image and its 64 tokens are paid for once per 6 answers
  (``--turns single`` gives each question its own row instead: 3x slower per answer).
* **Fixed positions** (``--position-embedding sincos``): the vision tower's position embeddings are 2-D
  sine-cosine codes (MAE's form), frozen: CLIP's learned ones start at std 0.02 and stayed ~20x smaller
  than the patch content, so no image feature said where its patch was and "where" stayed at chance
  (docs/demo.md, ``scripts/probe_where.py``).
* **Answer loss:** next-token cross-entropy on every answer and its end token.
* **Patch loss** (``--aux-weight``, ``--position-weight``): a linear head (training only, not saved) on
  each projected image token predicts the shape, the colour and the side of the image (left / right /
  near the centre line) of the object covering most of that patch (``synthetic.object_mask``; "none" if it
  covers under a quarter). It teaches the vision tower what an object is, and where, several times faster
  than the answers alone. It says nothing about the question, so the prior stays free to act.
* **Attention guidance** (``--guide-weight``): in the deeper half of the language layers, the last prompt
  row's attention (the row whose logits give the answer; heads averaged, renormalised over the image
  tokens) is pulled towards the uniform distribution over the patches the question's evidence boxes touch
  (cross-entropy). Without it, the probes' attention stayed flat over depth (evidence AUROC 0.6-0.75 in
  every layer, docs/demo.md): tiny models read the image from the question's tokens, not from the answer
  row. Only *where to look* is taught; the answer is not: whether the model uses what it looks at, or its
  prior, is left to training on the biased split, which is what the demo measures.
* **Photometric augmentation** (``--darken``): half the images are darkened region-wise as VEA's highlight
  does (every pixel scaled by ``lo + (1 - lo) m``, ``m`` a smooth random map, ``lo ~ U(0.3, 1)``,
  truncated to uint8), so a highlighted image is not out of distribution.
* AdamW (betas 0.9/0.98, weight decay 0.05 on matrices), lr 1.5e-3, 100 warm-up steps then cosine to 5%
  over 3,000 steps, gradient clipping at 1, batches of 32 images (192 answers); stops at
  ``--max-minutes`` (which makes the step count depend on the machine) or at ``--stop-at-step`` (which
  does not: the bundled model's stage 1 is ``--stop-at-step 2667``, where its 58-minute budget stopped).
* **Optional second stage, off by default** (``--look-images K``): after ``--steps``, ``--look-steps``
  more steps (lr ``--look-lr``, cosine) add K *look rows* per step: images of a colour-balanced split,
  one question each, answers NOT trained at the output (labels -100); they carry the guidance and patch
  losses and a logit-lens answer loss (``--look-lens-weight``) at ``--look-lens-layer`` (final norm and
  unembedding held fixed); ``--no-look-patch-loss`` leaves them the guidance alone.
* **Optional colour uncertainty, off by default** (``--hue-jitter SIGMA``): every image's hues rotated
  about the grey axis by a smooth random angle field (``N(0, SIGMA^2)`` degrees on a 4 x 4 grid), so a
  seen colour is uncertain evidence to weigh against the prior.
* ``--init-from DIR`` continues a saved model (later stages: ``--steps`` ordinary steps and/or the look
  stage); the new ``training_log.json`` keeps the earlier one under ``init_from``.

The bundled model is three runs of this script (``scripts/train_organism.sh``, docs/demo.md): the recipe
above from scratch (stage 1, ``--stop-at-step 2667``), 400 ordinary steps with ``--hue-jitter 80``
(stage 2), then the look stage with the same jitter (stage 3).

    bash scripts/train_organism.sh src/seesay/demo/model                      # CPU, 2 cores: 73 min
    python scripts/train_demo_model.py --out OUT                              # stage 1 alone: 58 min
    python scripts/train_demo_model.py --device cuda --out OUT
"""

from __future__ import annotations

import argparse
import json
import math
import random
import time
from pathlib import Path

import numpy as np
import torch
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import (
    CLIPVisionConfig,
    LlamaConfig,
    LlavaConfig,
    LlavaForConditionalGeneration,
    LlavaProcessor,
    PreTrainedTokenizerFast,
)

from seesay.demo import synthetic

try:  # PIL backend (no torchvision needed); older transformers 5.x only have the default class
    from transformers import CLIPImageProcessorPil
except ImportError:  # pragma: no cover
    from transformers import CLIPImageProcessor as CLIPImageProcessorPil

SPECIALS = ["<unk>", "<pad>", "<s>", "</s>", "<image>"]
CHAT_TEMPLATES = {
    # LLaVA's order: the image, then the question
    "image-first": (
        "{{ bos_token }}{% for message in messages %}{% if message['role'] == 'user' %}USER: "
        "{% for content in message['content'] %}{% if content['type'] == 'image' %}<image>\n"
        "{% elif content['type'] == 'text' %}{{ content['text'] }}{% endif %}{% endfor %} "
        "{% else %}ASSISTANT: {% for content in message['content'] %}{{ content['text'] }}{% endfor %}"
        "{{ eos_token }}{% endif %}{% endfor %}{% if add_generation_prompt %}ASSISTANT:{% endif %}"
    ),
    # the question, then the image (as Qwen-VL-style prompts allow): the question's tokens cannot see
    # the image, so what the answer needs from it must be gathered by the rows after the image
    "question-first": (
        "{{ bos_token }}{% for message in messages %}{% if message['role'] == 'user' %}USER: "
        "{% for content in message['content'] %}{% if content['type'] == 'text' %}{{ content['text'] }} "
        "{% endif %}{% endfor %}{% for content in message['content'] %}{% if content['type'] == 'image' %}"
        "<image>\n{% endif %}{% endfor %}"
        "{% else %}ASSISTANT: {% for content in message['content'] %}{{ content['text'] }}{% endfor %}"
        "{{ eos_token }} {% endif %}{% endfor %}{% if add_generation_prompt %}ASSISTANT:{% endif %}"
    ),
}
CHAT_TEMPLATE = CHAT_TEMPLATES["image-first"]
MEAN, STD = (0.48145466, 0.4578275, 0.40821073), (0.26862954, 0.26130258, 0.27577711)


def build_tokenizer() -> PreTrainedTokenizerFast:
    words = list(dict.fromkeys([*SPECIALS, "USER", "ASSISTANT", ":", *synthetic.VOCABULARY]))
    backend = Tokenizer(models.WordLevel(vocab={w: i for i, w in enumerate(words)}, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Punctuation()]
    )
    tok = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        unk_token="<unk>",
        pad_token="<pad>",
        bos_token="<s>",
        eos_token="</s>",
        padding_side="left",
        extra_special_tokens={"image_token": "<image>"},
    )
    tok.add_special_tokens({"additional_special_tokens": ["<image>"]})
    return tok


def build_model(tok: PreTrainedTokenizerFast, args) -> LlavaForConditionalGeneration:
    size, patch = synthetic.IMAGE_SIZE, 8
    vision = CLIPVisionConfig(
        hidden_size=args.vision_hidden,
        intermediate_size=4 * args.vision_hidden,
        num_hidden_layers=args.vision_layers,
        num_attention_heads=4,
        image_size=size,
        patch_size=patch,
        projection_dim=args.vision_hidden,
    )
    text = LlamaConfig(
        vocab_size=len(tok),
        hidden_size=args.hidden,
        intermediate_size=args.hidden * 8 // 3,
        num_hidden_layers=args.layers,
        num_attention_heads=args.heads,
        num_key_value_heads=args.heads,
        max_position_embeddings=256,
        tie_word_embeddings=False,
        pad_token_id=tok.pad_token_id,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
    )
    config = LlavaConfig(
        vision_config=vision,
        text_config=text,
        image_token_index=tok.convert_tokens_to_ids("<image>"),
        image_seq_length=(size // patch) ** 2,
        vision_feature_layer=-1,
        vision_feature_select_strategy="default",
        tie_word_embeddings=False,
    )
    model = LlavaForConditionalGeneration(config)
    if getattr(args, "position_embedding", "learned") == "sincos":
        embeddings = model.model.vision_tower.embeddings
        with torch.no_grad():
            embeddings.position_embedding.weight.copy_(sincos_positions(size // patch, args.vision_hidden))
        embeddings.position_embedding.weight.requires_grad_(False)
    model.generation_config.eos_token_id = tok.eos_token_id
    model.generation_config.pad_token_id = tok.pad_token_id
    return model


def sincos_positions(grid: int, dim: int) -> torch.Tensor:
    """``(1 + grid**2, dim)`` fixed 2-D sine-cosine position features (MAE's form): half the channels code
    the patch row, half its column, each as ``sin(p w_k), cos(p w_k)`` with ``w_k = 10000^(-k / (dim/4))``;
    row 0 (the class token) is zero. Values in [-1, 1] (rms 0.71), on the scale of the patch embeddings,
    so a patch's position survives the vision tower's pre-norm (learned ones from the 0.02 init stay ~20x
    smaller than the content: the probe of scripts/probe_where.py)."""
    quarter = dim // 4
    omega = 1.0 / 10000 ** (torch.arange(quarter, dtype=torch.float64) / quarter)
    rows, cols = torch.meshgrid(torch.arange(grid), torch.arange(grid), indexing="ij")

    def code(p: torch.Tensor) -> torch.Tensor:
        angle = p.reshape(-1, 1).double() * omega[None]
        return torch.cat([angle.sin(), angle.cos()], 1)

    table = torch.cat([code(rows), code(cols)], 1)
    table = torch.nn.functional.pad(table, (0, dim - table.shape[1]))
    return torch.cat([torch.zeros(1, dim, dtype=torch.float64), table]).float()


def build_processor(tok: PreTrainedTokenizerFast, template: str = "image-first") -> LlavaProcessor:
    size = synthetic.IMAGE_SIZE
    image_processor = CLIPImageProcessorPil(
        size={"shortest_edge": size},
        crop_size={"height": size, "width": size},
        image_mean=list(MEAN),
        image_std=list(STD),
    )
    processor = LlavaProcessor(
        image_processor=image_processor,
        tokenizer=tok,
        patch_size=8,
        vision_feature_select_strategy="default",
        num_additional_image_tokens=1,
        image_token="<image>",
        chat_template=CHAT_TEMPLATES[template],
    )
    return processor


def image_bytes(images: list) -> torch.Tensor:
    """``(n, 64, 64, 3)`` uint8: the images as stored for training (a quarter of float32's memory)."""
    return torch.from_numpy(np.stack([np.asarray(im, dtype=np.uint8) for im in images]))


def normalize(batch: torch.Tensor) -> torch.Tensor:
    """The processor's transform for 64 x 64 images (identity resize/crop, rescale, normalise)."""
    mean = torch.tensor(MEAN, dtype=torch.float32)
    std = torch.tensor(STD, dtype=torch.float32)
    x = (batch.float() / 255.0 - mean) / std
    return x.permute(0, 3, 1, 2).contiguous()


def pixels(images: list) -> torch.Tensor:
    """:func:`normalize` of a list of PIL images."""
    return normalize(image_bytes(images))


class Encoder:
    """Prompt + answer token ids, cached per distinct question / answer."""

    def __init__(self, processor: LlavaProcessor):
        self.processor, self.tok = processor, processor.tokenizer
        self.n_image = synthetic.IMAGE_SIZE // 8 * (synthetic.IMAGE_SIZE // 8)
        self.cache: dict[str, list[int]] = {}
        self.turn_cache: dict[str, list[int]] = {}

    def prompt_ids(self, question: str) -> list[int]:
        if question not in self.cache:
            text = self.processor.apply_chat_template(
                [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": question}]}],
                add_generation_prompt=True,
                tokenize=False,
            )
            ids = self.tok(text, add_special_tokens=False)["input_ids"]
            image_id = self.tok.convert_tokens_to_ids("<image>")
            at = ids.index(image_id)
            self.cache[question] = ids[:at] + [image_id] * self.n_image + ids[at + 1 :]
        return self.cache[question]

    def turn_ids(self, question: str) -> list[int]:
        """A later turn's prompt, ``USER: {question} ASSISTANT:``, as the chat template writes it."""
        if question not in self.turn_cache:
            text = f"USER: {question} ASSISTANT:"
            self.turn_cache[question] = self.tok(text, add_special_tokens=False)["input_ids"]
        return self.turn_cache[question]

    def answer_ids(self, answer: str) -> list[int]:
        return self.tok(" " + answer, add_special_tokens=False)["input_ids"] + [self.tok.eos_token_id]

    def batch(self, records: list[dict], single_turn: bool = False) -> dict[str, torch.Tensor]:
        """One multi-turn conversation per image: the record's question first (exactly the single-turn
        prompt used at inference), then its ``extra`` questions as later turns; loss on the answers.

        With ``single_turn``, every question is its own single-turn conversation (the image repeated),
        one row each, in the order record by record; ``image_index`` maps each row to its record and
        ``answer_row`` holds the position of each row's last prompt token."""
        rows, labels, image_index, answer_row = [], [], [], []
        for i, r in enumerate(records):
            turns = [(r["question"], r["answer"]), *r.get("extra", ())]
            if single_turn:
                for question, answer in turns:
                    p, a = self.prompt_ids(question), self.answer_ids(answer)
                    rows.append(p + a)
                    labels.append([-100] * len(p) + a)
                    image_index.append(i)
                    answer_row.append(len(p) - 1)
                continue
            ids: list[int] = []
            lab: list[int] = []
            for k, (question, answer) in enumerate(turns):
                p = self.prompt_ids(question) if k == 0 else self.turn_ids(question)
                a = self.answer_ids(answer)
                if k == 0:
                    answer_row.append(len(p) - 1)
                ids += p + a
                lab += [-100] * len(p) + a
            rows.append(ids)
            labels.append(lab)
            image_index.append(i)
        width = max(len(x) for x in rows)
        pad = self.tok.pad_token_id
        ids_t = torch.full((len(rows), width), pad)
        lab_t = torch.full((len(rows), width), -100)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        for i, (x, y) in enumerate(zip(rows, labels, strict=True)):
            ids_t[i, : len(x)] = torch.tensor(x)
            lab_t[i, : len(y)] = torch.tensor(y)
            mask[i, : len(x)] = 1
        return {
            "input_ids": ids_t,
            "attention_mask": mask,
            "labels": lab_t,
            "image_index": torch.tensor(image_index),
            "answer_row": torch.tensor(answer_row),
        }


def merge_rows(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor], pad: int) -> dict[str, torch.Tensor]:
    """Rows of two right-padded training batches (``input_ids``, ``attention_mask``, ``labels``) in one."""
    width = max(a["input_ids"].shape[1], b["input_ids"].shape[1])
    fill = {"input_ids": pad, "attention_mask": 0, "labels": -100}
    out = {}
    for key, value in fill.items():
        parts = [torch.nn.functional.pad(x[key], (0, width - x[key].shape[1]), value=value) for x in (a, b)]
        out[key] = torch.cat(parts)
    return out


def extra_questions(records: list[dict], per_image: int, seed: int) -> None:
    """Add ``per_image - 1`` more (question, answer) pairs about each record's scene under ``extra``:
    different questions, question types spread as evenly as the scene allows; deterministic in ``seed``."""
    rng = np.random.default_rng([seed, 7])
    for r in records:
        scene, seen = r["scene"], {r["question"]}
        qtypes = synthetic._possible_qtypes(scene)
        extra = []
        for _ in range(8 * per_image):
            if len(extra) >= per_image - 1:
                break
            used = [r["qtype"], *(t for t, *_ in extra)]
            fewest = min(used.count(t) for t in qtypes)
            qtype = synthetic._pick(rng, [t for t in qtypes if used.count(t) == fewest])
            question, answer, boxes = synthetic._ask(rng, scene, qtype)
            if question not in seen:
                seen.add(question)
                extra.append((qtype, question, answer, boxes))
        r["extra"] = [(q, a) for _, q, a, _ in extra]
        r["extra_boxes"] = [b for *_, b in extra]


SIDES = ("left", "right", None)  # the side classes of the auxiliary target (None: near the centre line)


def patch_labels(scene: synthetic.Scene, patch: int = 8) -> np.ndarray:
    """``(patches, 3)`` int64 auxiliary targets of the vision features, per image patch (row-major), about
    the object covering most of the patch's pixels (0 = none: fewer than a quarter of them covered):
    its shape class, its colour class, and the side of the image its centre is on (1 left, 2 right,
    3 too close to the centre line to say, as ``where`` questions are never asked then)."""
    grid = synthetic.object_mask(scene)
    side = scene.size // patch
    grid = grid.reshape(side, patch, side, patch).transpose(0, 2, 1, 3).reshape(-1, patch * patch)
    counts = np.stack([(grid == k + 1).sum(1) for k in range(len(scene.objects))], 1)
    best = counts.argmax(1)
    covered = counts.max(1) >= patch * patch / 4
    shapes = np.array([synthetic.SHAPES.index(o.shape) + 1 for o in scene.objects])
    colors = np.array([synthetic.COLORS.index(o.color) + 1 for o in scene.objects])
    sides = np.array([SIDES.index(synthetic._side_of(o, scene.size)) + 1 for o in scene.objects])
    return (np.stack([shapes[best], colors[best], sides[best]], 1) * covered[:, None]).astype(np.int64)


def evidence_patches(boxes: list, size: int = synthetic.IMAGE_SIZE, patch: int = 8) -> np.ndarray:
    """``(patches,)`` bool, row-major: the patches any evidence box touches (VEA's "any" rule)."""
    side = size // patch
    out = np.zeros((side, side), dtype=bool)
    for x0, y0, x1, y1 in boxes:
        if x1 > x0 and y1 > y0:
            out[y0 // patch : (y1 - 1) // patch + 1, x0 // patch : (x1 - 1) // patch + 1] = True
    return out.reshape(-1)


def darken(images: torch.Tensor, gen: torch.Generator, p: float, patch: int = 8) -> torch.Tensor:
    """Region-wise darkening like VEA's highlight (Eq. 4), on ``(n, H, W, 3)`` uint8: with probability
    ``p`` per image, every pixel is scaled by ``g = lo + (1 - lo) m`` and truncated to uint8, where
    ``lo ~ U(0.3, 1)`` and ``m`` in [0, 1] is a smooth random map (a random patch grid raised to a random
    power in {1, 2, 4} for sparser maps, upsampled bilinearly, min-max normalised)."""
    n, h, w, _ = images.shape
    chosen = torch.rand(n, generator=gen) < p
    if p <= 0 or not chosen.any():
        return images
    k = int(chosen.sum())
    grid = torch.rand(k, 1, h // patch, w // patch, generator=gen)
    power = torch.tensor([1.0, 2.0, 4.0])[torch.randint(0, 3, (k,), generator=gen)]
    grid = grid ** power[:, None, None, None]
    m = torch.nn.functional.interpolate(grid, size=(h, w), mode="bilinear", align_corners=False)[:, 0]
    lo_m, hi_m = m.amin((1, 2), keepdim=True), m.amax((1, 2), keepdim=True)
    m = (m - lo_m) / (hi_m - lo_m).clamp_min(1e-6)
    lo = 0.3 + 0.7 * torch.rand(k, 1, 1, generator=gen)
    gain = (lo + (1 - lo) * m)[..., None]
    out = images.clone()
    out[chosen] = (images[chosen].float() * gain).clamp(0, 255).to(torch.uint8)
    return out


def rotate_hue(x: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
    """RGB colours ``x`` (``[..., 3]``, float) rotated about the grey axis ``u = (1, 1, 1) / sqrt(3)`` by
    ``theta`` (radians, ``[..., 1]``), Rodrigues' formula:
    ``x cos(theta) + (u x x) sin(theta) + u (u . x)(1 - cos(theta))``. Greys are fixed points; 120 degrees
    permutes the channels ``(r, g, b) -> (b, r, g)``."""
    u = torch.full((3,), 1 / math.sqrt(3), dtype=x.dtype)
    cross = torch.cross(u.expand_as(x), x, dim=-1)
    return x * torch.cos(theta) + cross * torch.sin(theta) + (x @ u)[..., None] * u * (1 - torch.cos(theta))


def hue_jitter(images: torch.Tensor, gen: torch.Generator, sigma: float, cells: int = 4) -> torch.Tensor:
    """Region-wise hue rotation of every image (``(n, H, W, 3)`` uint8): :func:`rotate_hue` by a smooth
    angle field, a ``cells x cells`` grid of ``N(0, sigma^2)`` degrees upsampled bilinearly (so each
    object keeps about one shift and different objects get different ones), rounded and truncated to
    uint8. The grey background is unchanged. A colour seen in the image becomes uncertain evidence, as
    lighting makes it in photographs, so the answer learns to weigh it against the training split's
    colour prior (``sigma`` 0: the identity, and no random numbers drawn)."""
    if sigma <= 0:
        return images
    n, h, w, _ = images.shape
    grid = torch.randn(n, 1, cells, cells, generator=gen) * math.radians(sigma)
    theta = torch.nn.functional.interpolate(grid, size=(h, w), mode="bilinear", align_corners=False)
    out = rotate_hue(images.float(), theta[:, 0, ..., None])
    return out.round().clamp(0, 255).to(torch.uint8)


class AttentionGuide:
    """Training-only attention function (``AttentionInterface``): sdpa for every row, and for each
    sequence's last prompt row in ``layers`` also the explicit attention row
    ``p_h = softmax(q_h K_h^T * scale)`` over the keys up to it, kept with its gradient."""

    NAME = "seesay_train_guide"

    def __init__(self, layers: list[int]):
        self.layers = set(layers)
        self.rows: torch.Tensor | None = None  # [B] last prompt position of each sequence
        self.probs: dict[int, torch.Tensor] = {}  # layer -> [B, H, T]

    def __call__(self, module, query, key, value, attention_mask, **kwargs):
        from transformers.integrations.sdpa_attention import sdpa_attention_forward

        out = sdpa_attention_forward(module, query, key, value, attention_mask, **kwargs)
        layer = getattr(module, "layer_idx", None)
        if self.rows is not None and layer in self.layers:
            b = torch.arange(query.shape[0], device=query.device)
            q = query[b, :, self.rows]  # [B, H, D]
            groups = query.shape[1] // key.shape[1]
            k = key.repeat_interleave(groups, dim=1) if groups > 1 else key
            scores = torch.einsum("bhd,bhtd->bht", q, k) * kwargs.get("scaling", module.scaling)
            later = torch.arange(key.shape[2], device=key.device)[None, :] > self.rows[:, None]
            scores = scores.masked_fill(later[:, None, :], float("-inf"))
            self.probs[layer] = scores.float().softmax(-1)
        return out


@torch.no_grad()
def accuracy(
    model,
    encoder: Encoder,
    records: list[dict],
    device: str,
    batch_size: int = 128,
    by_type: dict | None = None,
) -> float:
    """Greedy first-word accuracy (batched, left padded, one token answers + eos); with ``by_type`` (a
    dict), also each question type's accuracy in it."""
    model.eval()
    tok = encoder.tok
    correct = 0
    hits: dict[str, list[bool]] = {}
    for start in range(0, len(records), batch_size):
        chunk = records[start : start + batch_size]
        prompts = [encoder.prompt_ids(r["question"]) for r in chunk]
        width = max(len(p) for p in prompts)
        ids = torch.full((len(chunk), width), tok.pad_token_id)
        mask = torch.zeros_like(ids)
        for i, p in enumerate(prompts):
            ids[i, width - len(p) :] = torch.tensor(p)
            mask[i, width - len(p) :] = 1
        pv = pixels([synthetic.render(r["scene"]) for r in chunk]).to(device)
        out = model.generate(
            input_ids=ids.to(device),
            attention_mask=mask.to(device),
            pixel_values=pv,
            max_new_tokens=2,
            do_sample=False,
        )
        texts = tok.batch_decode(out[:, width:], skip_special_tokens=True)
        for t, r in zip(texts, chunk, strict=True):
            right = t.strip().split(" ")[0] == r["answer"]
            correct += right
            hits.setdefault(r["qtype"], []).append(right)
    if by_type is not None:
        by_type.update({q: round(sum(v) / len(v), 3) for q, v in sorted(hits.items())})
    model.train()
    return correct / len(records)


def layer_auroc(model, processor, records: list[dict], batch_size: int = 100) -> list[float]:
    """Per-layer evidence AUROC of the last prompt row's attention (seesay demo's measurement)."""
    from seesay.demo.run import auroc_matrix, nanmean
    from seesay.engine.adapters import get_adapter
    from seesay.engine.loading import LoadedModel

    model.eval()
    loaded = LoadedModel(model=model, processor=processor, adapter=get_adapter(model, processor))
    with torch.no_grad():
        values = nanmean(auroc_matrix(loaded, records, batch_size), axis=0)
    model.train()
    return [round(float(v), 3) for v in values]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--prior", type=float, default=0.95)
    ap.add_argument("--train-samples", type=int, default=100000)
    ap.add_argument("--steps", type=int, default=3000, help="steps of the first stage")
    ap.add_argument("--batch-size", type=int, default=32, help="images per step")
    ap.add_argument("--lr", type=float, default=1.5e-3)
    ap.add_argument("--warmup", type=int, default=100)
    ap.add_argument("--layers", type=int, default=12)
    ap.add_argument("--hidden", type=int, default=128)
    ap.add_argument("--heads", type=int, default=8)
    ap.add_argument("--vision-hidden", type=int, default=128)
    ap.add_argument("--vision-layers", type=int, default=3)
    ap.add_argument("--eval-every", type=int, default=500)
    ap.add_argument("--eval-samples", type=int, default=300, help="held-out questions per split per check")
    ap.add_argument(
        "--eval-auroc",
        type=int,
        default=100,
        help="questions per split for the per-layer AUROC at each check",
    )
    ap.add_argument("--max-minutes", type=float, default=58.0)
    ap.add_argument(
        "--stop-at-step",
        type=int,
        default=None,
        help="stop after this step, the lr schedule still spanning --steps: replays a run the time "
        "budget stopped, on any machine (the bundled model: --stop-at-step 2667)",
    )
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--questions-per-image", type=int, default=6)
    ap.add_argument("--template", choices=sorted(CHAT_TEMPLATES), default="image-first")
    ap.add_argument(
        "--turns", choices=("multi", "single"), default="multi",
        help="an image's questions as one multi-turn conversation, or as single-turn rows of their own",
    )  # fmt: skip
    ap.add_argument("--darken", type=float, default=0.5, help="share of images region-wise darkened")
    ap.add_argument(
        "--hue-jitter", type=float, default=0.0,
        help="std (degrees) of the region-wise hue rotation applied to every training image (0: off)",
    )  # fmt: skip
    ap.add_argument("--aux-weight", type=float, default=0.5)
    ap.add_argument(
        "--position-weight",
        type=float,
        default=0.5,
        help="weight of the auxiliary per-patch side target (left / right / centre of its object)",
    )
    ap.add_argument(
        "--guide-weight", type=float, default=0.5,
        help="weight of the attention-guidance loss on the deeper half's last prompt rows (0: off)",
    )  # fmt: skip
    ap.add_argument(
        "--position-embedding", choices=("sincos", "learned"), default="sincos",
        help="vision position embeddings: fixed 2-D sine-cosine (frozen) or CLIP's learned ones",
    )  # fmt: skip
    ap.add_argument(
        "--look-images", type=int, default=0,
        help="colour-balanced images per step that train only where to look (guidance, patch loss)",
    )  # fmt: skip
    ap.add_argument(
        "--look-lens-weight", type=float, default=0.5,
        help="weight of a logit-lens answer loss at --look-lens-layer on the look rows (0: off)",
    )  # fmt: skip
    ap.add_argument("--look-lens-layer", type=int, default=-1, help="(-1: two thirds of the depth)")
    ap.add_argument(
        "--look-steps", type=int, default=350,
        help="steps of the second stage (after --steps), the one with the look rows (0: none)",
    )  # fmt: skip
    ap.add_argument(
        "--look-patch-loss", action=argparse.BooleanOptionalAction, default=True,
        help="the patch loss on the look rows' images too (--no-look-patch-loss: guidance only)",
    )  # fmt: skip
    ap.add_argument("--look-lr", type=float, default=6e-4, help="peak learning rate of the second stage")
    ap.add_argument("--look-warmup", type=int, default=20)
    ap.add_argument(
        "--init-from", type=Path, help="continue from a saved model's weights (same architecture)"
    )
    args = ap.parse_args()
    if args.stop_at_step is not None and args.stop_at_step < 1:
        ap.error(f"--stop-at-step must be at least 1, got {args.stop_at_step}")

    t0 = time.time()
    random.seed(args.seed)
    np.random.seed(args.seed)
    torch.manual_seed(args.seed)
    torch.set_num_threads(args.threads)
    tok = build_tokenizer()
    processor = build_processor(tok, args.template)
    encoder = Encoder(processor)
    model = build_model(tok, args)
    if args.init_from is not None:
        model.load_state_dict(
            LlavaForConditionalGeneration.from_pretrained(args.init_from, dtype=torch.float32).state_dict()
        )
        print(f"continuing from {args.init_from}", flush=True)
    model = model.to(args.device)
    model.train()
    n_params = sum(p.numel() for p in model.parameters())
    print(f"model: {n_params / 1e6:.2f} M parameters, {args.layers} text layers", flush=True)

    train = synthetic.generate("train", args.train_samples, seed=args.seed, prior=args.prior)
    train_images = image_bytes([synthetic.render(r["scene"]) for r in train])
    extra_questions(train, args.questions_per_image, args.seed)
    train_targets = torch.from_numpy(np.stack([patch_labels(r["scene"]) for r in train]))
    look: list[dict] = []
    if args.look_images > 0 and args.look_steps > 0:  # colours uniform: looking learned free of the prior
        look = synthetic.generate(
            "train", args.train_samples // 4, seed=args.seed + 2000, prior=1 / len(synthetic.COLORS)
        )
        look_images = image_bytes([synthetic.render(r["scene"]) for r in look])
        look_targets = torch.from_numpy(np.stack([patch_labels(r["scene"]) for r in look]))
    iid = synthetic.generate("iid", args.eval_samples, seed=args.seed + 1000, prior=args.prior)
    counterfactual = synthetic.generate("counterfactual", args.eval_samples, seed=args.seed + 1000)
    print(f"data: {len(train)} training samples rendered in {time.time() - t0:.0f} s", flush=True)

    # Auxiliary head (training only, not saved): from each projected image token, predict the shape and
    # the colour of the object under that patch. It teaches the vision tower what an object is far faster
    # than the answer tokens alone.
    aux_sizes = [len(synthetic.SHAPES) + 1, len(synthetic.COLORS) + 1]  # covering shape, colour
    if args.position_weight > 0:  # + the side of the image the object's centre is on
        aux_sizes.append(len(SIDES) + 1)
    aux_head = torch.nn.Linear(args.hidden, sum(aux_sizes))
    aux_head = aux_head.to(args.device)
    projected: dict[str, torch.Tensor] = {}
    model.model.multi_modal_projector.register_forward_hook(
        lambda _m, _i, out: projected.__setitem__("features", out)
    )
    guide = None
    if args.guide_weight > 0:
        from transformers import AttentionInterface

        guide = AttentionGuide(list(range(args.layers // 2, args.layers)))
        AttentionInterface.register(AttentionGuide.NAME, guide)
        model.set_attn_implementation({"text_config": AttentionGuide.NAME})
    image_id = tok.convert_tokens_to_ids("<image>")
    use_aux = args.aux_weight > 0 or args.position_weight > 0
    params = [p for p in model.parameters() if p.requires_grad]
    params += list(aux_head.parameters()) if use_aux else []
    decay = [p for p in params if p.dim() >= 2]
    no_decay = [p for p in params if p.dim() < 2]
    opt = torch.optim.AdamW(
        [{"params": decay, "weight_decay": 0.05}, {"params": no_decay, "weight_decay": 0.0}],
        lr=args.lr,
        betas=(0.9, 0.98),
    )

    look_steps = args.look_steps if look else 0
    total_steps = args.steps + look_steps

    def lr_at(step: int) -> float:
        """Warm-up then cosine to 5% in each stage."""
        peak, warmup, length = args.lr, args.warmup, args.steps
        if step >= args.steps:
            peak, warmup, length, step = args.look_lr, args.look_warmup, look_steps, step - args.steps
        if step < warmup:
            return peak * (step + 1) / warmup
        frac = (step - warmup) / max(1, length - warmup)
        return peak * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * frac)))

    def evaluate(step: int, loss: float) -> dict:
        if guide is not None:
            model.set_attn_implementation({"text_config": "sdpa"})
        types: dict[str, float] = {}
        acc_iid = accuracy(model, encoder, iid, args.device, by_type=types)
        acc_cf = accuracy(model, encoder, counterfactual, args.device)
        row = {"step": step, "loss": loss, "iid": acc_iid, "counterfactual": acc_cf, "iid_by_type": types}
        print(f"eval step {step}: iid {acc_iid:.3f} counterfactual {acc_cf:.3f} iid {types}", flush=True)
        if args.eval_auroc:
            row["auroc"] = layer_auroc(
                model, processor, iid[: args.eval_auroc] + counterfactual[: args.eval_auroc]
            )
            print(f"  evidence AUROC by layer: {row['auroc']}", flush=True)
        if guide is not None:
            model.set_attn_implementation({"text_config": AttentionGuide.NAME})
        row["seconds"] = time.time() - t0
        return row

    lens_weight = args.look_lens_weight if look else 0.0
    lens_hidden: dict[str, torch.Tensor] = {}
    final_norm = model.model.language_model.norm
    if lens_weight:
        lens_layer = args.look_lens_layer if args.look_lens_layer >= 0 else (2 * args.layers) // 3
        model.model.language_model.layers[lens_layer].register_forward_hook(
            lambda _m, _i, out: lens_hidden.__setitem__("h", out[0] if isinstance(out, tuple) else out)
        )
    gen = torch.Generator().manual_seed(args.seed)
    look_gen = torch.Generator().manual_seed(args.seed + 2)
    aug_gen = torch.Generator().manual_seed(args.seed + 1)

    def augment(images: torch.Tensor) -> torch.Tensor:
        """The photometric augmentation of a batch (hue jitter, then darkening), normalised."""
        return normalize(darken(hue_jitter(images, aug_gen, args.hue_jitter), aug_gen, args.darken))

    use_bf16 = args.device.startswith("cuda")
    single = args.turns == "single"
    log = []
    step = 0
    while step < total_steps:
        order = torch.randperm(len(train), generator=gen)
        for start in range(0, len(order) - args.batch_size + 1, args.batch_size):
            idx = order[start : start + args.batch_size]
            records = [train[i] for i in idx.tolist()]
            batch = encoder.batch(records, single_turn=single)
            image_index, answer_row = batch.pop("image_index"), batch.pop("answer_row")
            batch = {k: v.to(args.device) for k, v in batch.items()}
            pv = augment(train_images[idx])
            targets = train_targets[idx]
            turns = (lambda r: [r["bboxs"], *r["extra_boxes"]]) if single else (lambda r: [r["bboxs"]])
            boxes = [b for r in records for b in turns(r)]
            main_rows = len(boxes)
            if look and step >= args.steps:
                # rows that only look: their answers are not trained (labels -100), so the colour prior
                # of the answers stays the training split's
                lidx = torch.randint(0, len(look), (args.look_images,), generator=look_gen)
                look_records = [look[i] for i in lidx.tolist()]
                extra = encoder.batch(look_records, single_turn=True)
                rows_b = torch.arange(len(look_records))
                look_answer = extra["input_ids"][rows_b, extra["answer_row"] + 1].to(args.device)
                extra["labels"].fill_(-100)
                extra["image_index"] += len(idx)
                batch = merge_rows(batch, {k: v.to(args.device) for k, v in extra.items()}, tok.pad_token_id)
                image_index = torch.cat([image_index, extra["image_index"]])
                answer_row = torch.cat([answer_row, extra["answer_row"]])
                pv = torch.cat([pv, augment(look_images[lidx])])
                looked = look_targets[lidx]
                if not args.look_patch_loss:  # the look rows teach only where to look (-100: ignored)
                    looked = torch.full_like(looked, -100)
                targets = torch.cat([targets, looked])
                boxes += [r["bboxs"] for r in look_records]
            pv = pv.to(args.device)
            for group in opt.param_groups:
                group["lr"] = lr_at(step)
            if guide is not None:
                guide.rows = answer_row.to(args.device)
                guide.probs = {}
            with torch.autocast("cuda", dtype=torch.bfloat16, enabled=use_bf16):
                # the vision tower runs once per image; its tokens go to each of the image's rows
                features = model.model.get_image_features(pixel_values=pv, return_dict=True).pooler_output
                features = torch.stack(list(features)) if isinstance(features, (list, tuple)) else features
                ids = batch.pop("input_ids")
                embeds = model.get_input_embeddings()(ids)
                is_image = (ids == image_id)[..., None].expand_as(embeds)
                rows = features[image_index.to(args.device)].to(embeds.dtype)
                embeds = embeds.masked_scatter(is_image, rows)
                loss = model(**batch, inputs_embeds=embeds).loss
                batch["input_ids"] = ids
                loss_total = loss
                if use_aux:
                    logits = aux_head(projected["features"].reshape(-1, args.hidden)).float()
                    targets = targets.reshape(-1, 3).to(args.device)
                    parts = logits.split(aux_sizes, dim=-1)
                    ce = [torch.nn.functional.cross_entropy(x, targets[:, k]) for k, x in enumerate(parts)]
                    loss_total = loss + args.aux_weight * (ce[0] + ce[1])
                    if args.position_weight > 0:
                        loss_total = loss_total + args.position_weight * ce[2]
                if guide is not None:
                    # cross-entropy of the heads' mean image attention (renormalised over the image
                    # tokens) against the uniform distribution over the evidence patches
                    ev = torch.from_numpy(np.stack([evidence_patches(b) for b in boxes])).to(args.device)
                    target = ev.float() / ev.sum(-1, keepdim=True).clamp_min(1)
                    is_image = batch["input_ids"] == image_id
                    guide_loss = 0.0
                    for probs in guide.probs.values():
                        image_rows = probs.mean(1)[is_image].reshape(len(boxes), -1)
                        share = image_rows / image_rows.sum(-1, keepdim=True).clamp_min(1e-12)
                        guide_loss = guide_loss - (target * torch.log(share + 1e-6)).sum(-1).mean()
                    loss_total = loss_total + args.guide_weight * guide_loss / len(guide.probs)
                if lens_weight and step >= args.steps:
                    # the look rows' answer read through the logit lens at one intermediate layer (final
                    # norm and unembedding held fixed, so only the layers up to it learn to carry it)
                    h = lens_hidden.pop("h")[main_rows:]
                    h = h[torch.arange(h.shape[0], device=h.device), answer_row[main_rows:].to(h.device)]
                    h = h.float()
                    h = h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + final_norm.variance_epsilon)
                    lens_logits = torch.nn.functional.linear(
                        h * final_norm.weight.detach().float(), model.lm_head.weight.detach().float()
                    )
                    lens_loss = torch.nn.functional.cross_entropy(lens_logits, look_answer)
                    loss_total = loss_total + lens_weight * lens_loss
            opt.zero_grad(set_to_none=True)
            loss_total.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            opt.step()
            step += 1
            if step % 100 == 0:
                side = f" side {ce[2].item():.3f}" if use_aux and args.position_weight > 0 else ""
                print(
                    f"step {step} loss {loss.item():.4f} aux {(loss_total - loss).item():.4f}{side} "
                    f"lr {lr_at(step):.2e} ({time.time() - t0:.0f} s)",
                    flush=True,
                )
            if step % args.eval_every == 0 or step in (args.steps, total_steps):
                log.append(evaluate(step, loss.item()))
            stop_here = args.stop_at_step is not None and step >= args.stop_at_step
            if step >= total_steps or stop_here or (time.time() - t0) / 60 > args.max_minutes:
                break
        if args.stop_at_step is not None and step >= args.stop_at_step:
            print(f"stopped at step {step} (--stop-at-step)", flush=True)
            break
        if (time.time() - t0) / 60 > args.max_minutes:
            print("time budget reached", flush=True)
            break

    if not log or log[-1]["step"] != step:
        log.append(evaluate(step, loss.item()))
    if guide is not None:
        model.set_attn_implementation({"text_config": "sdpa"})
    model = model.float().cpu().eval()
    args.out.mkdir(parents=True, exist_ok=True)
    # Weights stored in float16 (half the size in the package); the config says float32, so
    # from_pretrained(dtype="auto") gives a float32 model.
    model.to(torch.float16).save_pretrained(args.out)
    processor.save_pretrained(args.out)
    # seesay's per-model settings: trained on bare questions, so evaluation appends no instruction
    (args.out / "seesay.json").write_text(json.dumps({"prompt_suffix": ""}) + "\n")
    config = json.loads((args.out / "config.json").read_text())
    for part in (config, config.get("text_config", {}), config.get("vision_config", {})):
        if "dtype" in part:
            part["dtype"] = "float32"
    (args.out / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    summary = {
        "seed": args.seed,
        "prior": args.prior,
        "steps": step,
        "first_stage_steps": min(step, args.steps),
        "minutes": (time.time() - t0) / 60,
        "device": args.device,
        "parameters": n_params,
        "log": log,
        "args": {k: str(v) for k, v in vars(args).items()},
    }
    earlier = args.init_from / "training_log.json" if args.init_from is not None else None
    if earlier is not None and earlier.is_file():  # a later stage keeps the stages before it
        summary["init_from"] = json.loads(earlier.read_text())
    (args.out / "training_log.json").write_text(json.dumps(summary, indent=1) + "\n")
    print(json.dumps({k: v for k, v in summary.items() if k != "log"}), flush=True)


if __name__ == "__main__":
    main()
