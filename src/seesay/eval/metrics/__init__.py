"""Answer metrics: VQA accuracy and its variants, yes/no (POPE, MME, AMBER), CHAIR, Visual-CoT's VEA QA.

(Evidence retrieval, AUROC / AUPRC / NDCG of a map against boxes, is VEA's:
:mod:`seesay.methods.vea.retrieval`.)
"""
