"""GQA exact match: the official ``eval.py`` and LLaVA-1.5's pipeline into it.

- ``official``: GQA's ``eval.py`` (nlp.stanford.edu/data/gqa/eval.zip; no public repository, read from a
  verbatim copy): ``gold = question["answer"]; predicted = predictions[qid]; correct = (predicted == gold)``.
- ``llava``: haotian-liu/LLaVA at c121f0432da27facab705978f83c4ada465e46fd: ``llava/eval/model_vqa_loader.py``
  writes ``outputs = tokenizer.batch_decode(...)[0].strip()``; ``scripts/convert_gqa_for_eval.py`` writes
  ``{"questionId": ..., "prediction": res['text'].rstrip('.').lower()}``; ``scripts/v1_5/eval/gqa.sh`` then
  runs the official ``eval.py``.
"""


def official(answer, prediction):
    question = {"answer": answer}
    predictions = {0: prediction}
    gold = question["answer"]
    predicted = predictions[0]
    correct = predicted == gold
    return float(1 if correct else 0)


def llava(answer, prediction):
    outputs = prediction.strip()  # model_vqa_loader
    res = {"question_id": 0, "text": outputs}
    text = res["text"].rstrip(".").lower()  # convert_gqa_for_eval
    return official(answer, text)
