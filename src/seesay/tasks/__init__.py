"""Benchmarks: GQA, VQAv2, OK-VQA, VizWiz, TextVQA, DocVQA and Visual-CoT evidence sets."""

from .base import TASKS, Sample, Task, get_task, register

__all__ = ["TASKS", "Sample", "Task", "get_task", "register"]
