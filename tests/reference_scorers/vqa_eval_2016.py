"""GT-Vision-Lab/VQA ``PythonEvaluationTools/vqaEvaluation/vqaEval.py`` before the 2021 fix,
commit 458a8b268b1a239dc388e0af4423f3fe7477b04f (2016-10-08, "fixed the apostrophe symbol issue in
contractions dictionary"), the version most evaluation scripts copied.

Differences from master (a013f00): the human answers are never cleaned (no newline/tab/strip step), the
prediction is always cleaned and normalised, and when the answers are not all identical they get the
punctuation rule only. Python 2 semantics kept as in :mod:`.vqa_eval_master` (ASCII ``\\d``, count 32).
"""

import re

from .vqa_tables import ARTICLES, CONTRACTIONS, MANUAL_MAP, PUNCT


class VQAEval:
    def __init__(self):
        self.contractions = dict(CONTRACTIONS)
        self.manualMap = dict(MANUAL_MAP)
        self.articles = list(ARTICLES)
        self.periodStrip = re.compile(r"(?!<=\d)(\.)(?!\d)", re.ASCII)  # Python 2: \d is [0-9]
        self.commaStrip = re.compile(r"(\d)(\,)(\d)", re.ASCII)
        self.punct = list(PUNCT)

    def evaluate_question(self, answers, prediction):
        gts = {
            "answers": [
                {"answer": a, "answer_confidence": "yes", "answer_id": i + 1} for i, a in enumerate(answers)
            ]
        }
        res = {"answer": prediction}
        resAns = res["answer"]
        resAns = resAns.replace("\n", " ")
        resAns = resAns.replace("\t", " ")
        resAns = resAns.strip()
        resAns = self.processPunctuation(resAns)
        resAns = self.processDigitArticle(resAns)
        gtAcc = []
        gtAnswers = [ans["answer"] for ans in gts["answers"]]
        if len(set(gtAnswers)) > 1:
            for ansDic in gts["answers"]:
                ansDic["answer"] = self.processPunctuation(ansDic["answer"])
        for gtAnsDatum in gts["answers"]:
            otherGTAns = [item for item in gts["answers"] if item != gtAnsDatum]
            matchingAns = [item for item in otherGTAns if item["answer"] == resAns]
            acc = min(1, float(len(matchingAns)) / 3)
            gtAcc.append(acc)
        avgGTAcc = float(sum(gtAcc)) / len(gtAcc)
        return avgGTAcc

    def processPunctuation(self, inText):
        outText = inText
        for p in self.punct:
            if (p + " " in inText or " " + p in inText) or (re.search(self.commaStrip, inText) != None):  # noqa: E711
                outText = outText.replace(p, "")
            else:
                outText = outText.replace(p, " ")
        outText = self.periodStrip.sub("", outText, re.UNICODE)
        return outText

    def processDigitArticle(self, inText):
        outText = []
        tempText = inText.lower().split()
        for word in tempText:
            word = self.manualMap.setdefault(word, word)
            if word not in self.articles:
                outText.append(word)
            else:
                pass
        for wordId, word in enumerate(outText):
            if word in self.contractions:
                outText[wordId] = self.contractions[word]
        outText = " ".join(outText)
        return outText


def vqa_accuracy(answers, prediction):
    return VQAEval().evaluate_question(answers, prediction)
