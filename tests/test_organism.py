"""The bundled demo model exhibits what the methods exist for (issue 14, item 2), on held-out questions.

The questions are the demo's held-out seed (never trained on, never used to choose a recipe); the
profiled layers and the lens layer are picked on the demo's dev seed, as `seesay demo` does. The sample is
small enough for CI (150 questions per split for attention, 300 for accuracy); the margins on the
bundled model are in docs/demo.md. A target a bundled model does not reach is marked a strict xfail with
the measured value (the measurement kept as the issue states it); the bundled model reaches them all.
"""

from __future__ import annotations

import numpy as np
import pytest

from seesay.demo import synthetic
from seesay.demo.run import (
    ANSWER_WORDS,
    DEV_N,
    DEV_SEED,
    SPLITS,
    answer_first_words,
    auroc_matrix,
    demo_model_path,
    heldout,
    lens_tops,
    nanmean,
    pick_lens_layer,
)
from seesay.methods import get_method

pytestmark = pytest.mark.skipif(demo_model_path() is None, reason="no bundled demo model in this checkout")

N_ATTENTION = 150  # questions per split scored against the boxes
N_ANSWERS = 300  # questions per split answered
N_PRIOR = 600  # counterfactual questions for the prior's share (the first 600 of the demo's 1,100)


@pytest.fixture(scope="module")
def loaded():
    from seesay import load_model

    return load_model(demo_model_path(), dtype="float32")


@pytest.fixture(scope="module")
def answers(loaded):
    from seesay.methods import get_method

    out = {}
    for split in SPLITS:
        records = heldout(split, N_ANSWERS)
        got = answer_first_words(loaded, get_method("base"), records, batch_size=100)
        out[split] = (records, np.array([a == r["answer"] for a, r in zip(got, records, strict=True)]), got)
    return out


@pytest.fixture(scope="module")
def auroc(loaded):
    records = [r for s in SPLITS for r in heldout(s, N_ATTENTION)]
    return records, auroc_matrix(loaded, records, batch_size=100)


def test_iid_accuracy_and_every_question_type_but_where(answers):
    records, right, _ = answers["iid"]
    assert right.mean() >= 0.90
    for qtype in ("color", "shape", "exists", "count"):
        picked = [c for c, r in zip(right, records, strict=True) if r["qtype"] == qtype]
        assert len(picked) >= 30 and np.mean(picked) >= 0.75, qtype


def test_left_right_is_learned(answers):
    records, right, _ = answers["iid"]
    where = [c for c, r in zip(right, records, strict=True) if r["qtype"] == "where"]
    assert len(where) >= 30 and np.mean(where) >= 0.85


def test_deep_layers_find_the_evidence_shallow_ones_do_not(loaded, auroc):
    _, matrix = auroc
    per_layer = nanmean(matrix, axis=0)
    layers = loaded.adapter.num_layers
    assert layers >= 12 and loaded.adapter.num_heads >= 8
    best_deep = per_layer[layers // 2 :].max()
    shallow = per_layer[: max(1, layers // 4)].mean()
    assert best_deep >= 0.85
    assert best_deep - shallow >= 0.15


def test_seeing_but_not_believing(loaded, auroc, answers):
    """The profiled layers (top quarter by AUROC on the dev split) look at the evidence as well when the
    answer is wrong as when it is right: within 0.05."""
    _, matrix = auroc
    dev = [r for s in SPLITS for r in synthetic.generate(s, DEV_N, seed=DEV_SEED)]
    dev_auroc = nanmean(auroc_matrix(loaded, dev, batch_size=100), axis=0)
    top = max(1, round(0.25 * loaded.adapter.num_layers))
    profiled = sorted(np.argsort(-np.nan_to_num(dev_auroc, nan=-1))[:top])
    right = np.concatenate([answers[s][1][:N_ATTENTION] for s in SPLITS])
    scores = nanmean(matrix[:, profiled], axis=1)
    ok = ~np.isnan(scores)
    assert (~right & ok).sum() >= 30  # enough wrong answers to compare
    assert abs(scores[right & ok].mean() - scores[~right & ok].mean()) <= 0.05


def test_seeing_right_but_saying_wrong(loaded, answers):
    """Among counterfactual errors, an intermediate layer's lens (the one layer picked on the dev split)
    names the right answer on >= 20%, above the chance of a random answer word of the question type."""
    dev = [r for s in SPLITS for r in synthetic.generate(s, DEV_N, seed=DEV_SEED)]
    layer = pick_lens_layer(loaded, dev, batch_size=100)
    assert 0 <= layer < loaded.adapter.num_layers - 1
    records, right, _ = answers["counterfactual"]
    tokenizer = loaded.processor.tokenizer
    tops = lens_tops(loaded, records, batch_size=100)
    ids = np.array([tokenizer.convert_tokens_to_ids(r["answer"]) for r in records])
    wrong = ~right
    hits = (tops[:, layer] == ids) & wrong
    share = hits.sum() / wrong.sum()
    chance = np.mean([1 / len(ANSWER_WORDS[r["qtype"]]) for r, w in zip(records, wrong, strict=True) if w])
    assert wrong.sum() >= 30
    assert share >= 0.20 and share > chance


def test_the_prior_is_at_work(loaded):
    """Counterfactual colour errors name the shape's usual colour more often than chance (1 of the 3
    wrong colours): one-sided binomial p < 0.01 on the demo's 600 counterfactual questions (the first 300
    hold too few colour errors to tell)."""
    from scipy.stats import binomtest

    records = heldout("counterfactual", N_PRIOR)
    got = answer_first_words(loaded, get_method("base"), records, batch_size=100)
    usual = [
        a == synthetic.USUAL_COLOR[next(o["shape"] for o in r["objects"] if o["box"] == r["bboxs"][0])]
        for a, r in zip(got, records, strict=True)
        if r["qtype"] == "color" and a != r["answer"]
    ]
    assert len(usual) >= 40
    assert binomtest(sum(usual), len(usual), 1 / 3, alternative="greater").pvalue < 0.01
