"""LLaVA-1.5's TextVQA scorer: ``TextVQAAccuracyEvaluator`` of ``llava/eval/m4c_evaluator.py``
(haotian-liu/LLaVA at c121f0432da27facab705978f83c4ada465e46fd; copied from MMF), driven by
``llava/eval/eval_textvqa.py``. Its ``EvalAIAnswerProcessor`` is the same class as lmms-eval's."""

from .lmms_eval_vqa import EvalAIAnswerProcessor


class TextVQAAccuracyEvaluator:
    def __init__(self):
        self.answer_processor = EvalAIAnswerProcessor()

    def _compute_answer_scores(self, raw_answers):
        answers = [self.answer_processor(a) for a in raw_answers]
        assert len(answers) == 10
        gt_answers = list(enumerate(answers))
        unique_answers = set(answers)
        unique_answer_scores = {}

        for unique_answer in unique_answers:
            accs = []
            for gt_answer in gt_answers:
                other_answers = [item for item in gt_answers if item != gt_answer]
                matching_answers = [item for item in other_answers if item[1] == unique_answer]
                acc = min(1, float(len(matching_answers)) / 3)
                accs.append(acc)
            unique_answer_scores[unique_answer] = sum(accs) / len(accs)

        return unique_answer_scores

    def eval_pred_list(self, pred_list):
        pred_scores = []
        for entry in pred_list:
            pred_answer = self.answer_processor(entry["pred_answer"])
            unique_answer_scores = self._compute_answer_scores(entry["gt_answers"])
            score = unique_answer_scores.get(pred_answer, 0.0)
            pred_scores.append(score)

        accuracy = sum(pred_scores) / len(pred_scores)
        return accuracy


def textvqa_accuracy(answers, prediction):
    # the runner (model_vqa_loader.py) strips the generated text before it is written
    entry = {"pred_answer": prediction.strip(), "gt_answers": answers}
    return TextVQAAccuracyEvaluator().eval_pred_list([entry])
