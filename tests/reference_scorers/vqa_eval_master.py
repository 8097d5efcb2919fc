"""GT-Vision-Lab/VQA ``PythonEvaluationTools/vqaEvaluation/vqaEval.py`` at master,
commit a013f0043c1e2cdc995922dfe257f7149aa9af06 (2021-03-11, "Fixed processing answers bug").

``VQAEval.evaluate``'s accuracy loop for one question. The file is Python 2; where Python 3 would behave
differently the Python 2 behaviour is kept: ``re`` without ``re.UNICODE`` has an ASCII ``\\d`` (hence
``re.ASCII`` here). ``periodStrip.sub("", outText, re.UNICODE)`` passes the flag as the COUNT (32), as there.
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
        """Accuracy of one result (``res[quesId]['answer']``) against ``gts[quesId]['answers']``."""
        gts = {
            "answers": [
                {"answer": a, "answer_confidence": "yes", "answer_id": i + 1} for i, a in enumerate(answers)
            ]
        }
        res = {"answer": prediction}
        for ansDic in gts["answers"]:
            ansDic["answer"] = ansDic["answer"].replace("\n", " ")
            ansDic["answer"] = ansDic["answer"].replace("\t", " ")
            ansDic["answer"] = ansDic["answer"].strip()
        resAns = res["answer"]
        resAns = resAns.replace("\n", " ")
        resAns = resAns.replace("\t", " ")
        resAns = resAns.strip()
        gtAcc = []
        gtAnswers = [ans["answer"] for ans in gts["answers"]]

        if len(set(gtAnswers)) > 1:
            for ansDic in gts["answers"]:
                ansDic["answer"] = self.processPunctuation(ansDic["answer"])
                ansDic["answer"] = self.processDigitArticle(ansDic["answer"])
            resAns = self.processPunctuation(resAns)
            resAns = self.processDigitArticle(resAns)

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
