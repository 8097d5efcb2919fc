"""lmms-eval VQA-accuracy tasks: EvolvingLMMs-Lab/lmms-eval, commit 75571cfe0fa36ca5ec2e6aa2bb268f9d38295af3.

- ``EvalAIAnswerProcessor``: ``lmms_eval/tasks/_task_utils/vqa_eval_metric.py`` (last changed 2c03baf0; the
  MMF processor, also LLaVA's ``llava/eval/m4c_evaluator.py``);
- ``textvqa_process_results`` / ``ok_vqa_process_results`` / ``vizwiz_vqa_process_results`` /
  ``vqav2_process_results``: ``lmms_eval/tasks/{textvqa,ok_vqa,vizwiz_vqa,vqav2}/utils.py`` (c7eaef37);
- :func:`harness` = the first lines of ``ConfigurableTask.process_results`` (``lmms_eval/api/task.py``):
  the generated text is stripped before a task's own ``process_results`` sees it.
"""

import re
import statistics

from .vqa_tables import ARTICLES, CONTRACTIONS, MANUAL_MAP, PUNCT


class EvalAIAnswerProcessor:
    CONTRACTIONS = dict(CONTRACTIONS)  # noqa: RUF012
    NUMBER_MAP = dict(MANUAL_MAP)  # noqa: RUF012
    ARTICLES = list(ARTICLES)  # noqa: RUF012
    PERIOD_STRIP = re.compile(r"(?!<=\d)(\.)(?!\d)")
    COMMA_STRIP = re.compile(r"(?<=\d)(\,)+(?=\d)")
    PUNCTUATIONS = list(PUNCT)  # noqa: RUF012

    def __init__(self, *args, **kwargs):
        pass

    def word_tokenize(self, word):
        word = word.lower()
        word = word.replace(",", "").replace("?", "").replace("'s", " 's")
        return word.strip()

    def process_punctuation(self, in_text):
        out_text = in_text
        for p in self.PUNCTUATIONS:
            if (p + " " in in_text or " " + p in in_text) or (
                re.search(self.COMMA_STRIP, in_text) is not None
            ):
                out_text = out_text.replace(p, "")
            else:
                out_text = out_text.replace(p, " ")
        out_text = self.PERIOD_STRIP.sub("", out_text, re.UNICODE)
        return out_text

    def process_digit_article(self, in_text):
        out_text = []
        temp_text = in_text.lower().split()
        for word in temp_text:
            word = self.NUMBER_MAP.setdefault(word, word)
            if word not in self.ARTICLES:
                out_text.append(word)
            else:
                pass
        for word_id, word in enumerate(out_text):
            if word in self.CONTRACTIONS:
                out_text[word_id] = self.CONTRACTIONS[word]
        out_text = " ".join(out_text)
        return out_text

    def __call__(self, item):
        item = self.word_tokenize(item)
        item = item.replace("\n", " ").replace("\t", " ").strip()
        item = self.process_punctuation(item)
        item = self.process_digit_article(item)
        return item


def harness(results):
    """``ConfigurableTask.process_results`` for ``generate_until`` before it calls the task's function."""
    if isinstance(results, list) and isinstance(results[0], list):
        return [res.strip() if res is not None else "" for res in results[0]]
    return [res.strip() if res is not None else "" for res in results]


def textvqa_process_results(doc, result):
    # (textvqa: "accuracy = statistics.mean(gtAcc)" without the empty-list guard of ok_vqa / vizwiz)
    eval_ai_processor = EvalAIAnswerProcessor()
    assert len(result) == 1, f"The result should be a list of length 1, but got {len(result)}."
    resAns = eval_ai_processor(result[0])
    accuracy = 0

    if "answers" in doc and doc["answers"] is not None:
        gtAcc = []

        for i in range(len(doc["answers"])):
            doc["answers"][i] = eval_ai_processor(doc["answers"][i])

        for i in range(len(doc["answers"])):
            otherGTAns = [doc["answers"][j] for j in range(len(doc["answers"])) if i != j]
            matchingAns = [item for item in otherGTAns if item == resAns]
            acc = min(1, float(len(matchingAns)) / 3)
            gtAcc.append(acc)
        accuracy = statistics.mean(gtAcc)

    return {"exact_match": accuracy, "submission": {"question_id": doc["question_id"], "answer": resAns}}


def ok_vqa_process_results(doc, result):
    # vizwiz_vqa_process_results is the same function body
    eval_ai_processor = EvalAIAnswerProcessor()
    assert len(result) == 1, f"The result should be a list of length 1, but got {len(result)}."
    resAns = eval_ai_processor(result[0])
    accuracy = 0

    if "answers" in doc and doc["answers"] is not None:
        gtAcc = []

        for i in range(len(doc["answers"])):
            doc["answers"][i] = eval_ai_processor(doc["answers"][i])

        for i in range(len(doc["answers"])):
            otherGTAns = [doc["answers"][j] for j in range(len(doc["answers"])) if i != j]
            matchingAns = [item for item in otherGTAns if item == resAns]
            acc = min(1, float(len(matchingAns)) / 3)
            gtAcc.append(acc)
        if gtAcc:  # noqa: SIM108
            accuracy = statistics.mean(gtAcc)
        else:
            accuracy = 0

    return {"exact_match": accuracy, "submission": {"image": f"{doc['question_id']}.jpg", "answer": resAns}}


vizwiz_vqa_process_results = ok_vqa_process_results


def vqav2_process_results(doc, result):
    eval_ai_processor = EvalAIAnswerProcessor()
    assert len(result) == 1, f"The result should be a list of length 1, but got {len(result)}."
    resAns = result[0]
    accuracy = 0

    if "answers" in doc and doc["answers"] is not None:
        for ansDic in doc["answers"]:
            ansDic["answer"] = ansDic["answer"].replace("\n", " ")
            ansDic["answer"] = ansDic["answer"].replace("\t", " ")
            ansDic["answer"] = ansDic["answer"].strip()
        resAns = resAns.replace("\n", " ")
        resAns = resAns.replace("\t", " ")
        resAns = resAns.strip()
        gtAcc = []

        for ansDic in doc["answers"]:
            ansDic["answer"] = eval_ai_processor.process_punctuation(ansDic["answer"])
            ansDic["answer"] = eval_ai_processor.process_digit_article(ansDic["answer"])
        resAns = eval_ai_processor.process_punctuation(resAns)
        resAns = eval_ai_processor.process_digit_article(resAns)

        for gtAnsDatum in doc["answers"]:
            otherGTAns = [item for item in doc["answers"] if item != gtAnsDatum]
            matchingAns = [item for item in otherGTAns if item["answer"] == resAns]
            acc = min(1, float(len(matchingAns)) / 3)
            gtAcc.append(acc)
        accuracy = statistics.mean(gtAcc)

    return {"exact_match": accuracy, "submission": {"question_id": doc["question_id"], "answer": resAns}}


def textvqa_score(answers, prediction):
    doc = {"question_id": 0, "answers": list(answers)}
    return textvqa_process_results(doc, harness([prediction]))["exact_match"]


def ok_vqa_score(answers, prediction):
    doc = {"question_id": 0, "answers": list(answers)}
    return ok_vqa_process_results(doc, harness([prediction]))["exact_match"]


def vizwiz_score(answers, prediction):
    doc = {"question_id": 0, "answers": list(answers)}
    return vizwiz_vqa_process_results(doc, harness([prediction]))["exact_match"]


def vqav2_score(answers, prediction):
    # lmms-lab/VQAv2 rows carry {"answer", "answer_confidence", "answer_id"} per human answer
    doc = {
        "question_id": 0,
        "answers": [
            {"answer": a, "answer_confidence": "yes", "answer_id": i + 1} for i, a in enumerate(answers)
        ],
    }
    return vqav2_process_results(doc, harness([prediction]))["exact_match"]
