"""VEA's prompts (arXiv 2510.17771), shared by the method and by layer profiling (so neither imports the
other)."""

from __future__ import annotations

# The reference's prompt table (ZhiningLiu1998/VEA), typographic quotes (U+201C / U+201D) included; the
# VEA hint goes BEFORE "Question: {q}" and is the only difference from the QA prompt ("Inst" = VEA prompt
# on the plain image).
OPENING = (
    "Directly answer the question based on the image, no explanation is needed. "
    "If the image does not contain any relevant evidence, output \u201cI cannot answer based on the given "
    "image.\u201d"
)
VEA_HINT = (
    "Only use words from the picture, especially those in the highlighted region, to answer the question."
)
QA_PROMPT = OPENING + " Question: {question}"
VEA_PROMPT = OPENING + " " + VEA_HINT + " Question: {question}"


def qa_prompt(question: str) -> str:
    """The QA prompt of the reference's table around ``question``."""
    return QA_PROMPT.format(question=question)


def vea_prompt(question: str) -> str:
    """The VEA prompt (the QA prompt with the highlight hint) around ``question``."""
    return VEA_PROMPT.format(question=question)
