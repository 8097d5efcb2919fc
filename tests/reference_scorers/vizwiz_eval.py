"""The VizWiz VQA evaluation ``vqaEval.py`` (``__author__ = 'Qing Li'``, distributed from
https://vizwiz.org/tasks-and-datasets/vqa/; no public repository or commit, read from a verbatim copy).

``VQAEval.evaluate``'s accuracy loop for one image. A Python 3 file (so ``\\d`` is Unicode); only the
prediction is cleaned and normalised, the answers are compared raw; the contraction table is the VQA one of
2015 with typographic apostrophes (GT-Vision-Lab/VQA 14a5e12817514488a6317504e0fccc233cefe275).
"""

import re

from .vqa_tables import ARTICLES, CONTRACTIONS_2015, MANUAL_MAP, PUNCT


class VQAEval:
    def __init__(self):
        self.contractions = dict(CONTRACTIONS_2015)
        self.manualMap = dict(MANUAL_MAP)
        self.articles = list(ARTICLES)
        self.periodStrip = re.compile(r"(?!<=\d)(\.)(?!\d)")
        self.commaStrip = re.compile(r"(\d)(\,)(\d)")
        self.punct = list(PUNCT)

    def evaluate_image(self, answers, prediction):
        gts = {"answers": [{"answer": a, "answer_confidence": "yes"} for a in answers]}
        res = {"answer": prediction}
        resAns = res["answer"]
        resAns = resAns.replace("\n", " ")
        resAns = resAns.replace("\t", " ")
        resAns = resAns.strip()
        resAns = self.processPunctuation(resAns)
        resAns = self.processDigitArticle(resAns)
        gtAcc = []
        for i, _ans in enumerate(gts["answers"]):
            otherGTAns = [item for j, item in enumerate(gts["answers"]) if i != j]
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


def vizwiz_accuracy(answers, prediction):
    return VQAEval().evaluate_image(answers, prediction)
