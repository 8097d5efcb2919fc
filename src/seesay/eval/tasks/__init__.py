"""Benchmarks: GQA, VQAv2, OK-VQA, VizWiz, TextVQA, DocVQA, Visual-CoT evidence sets and POPE."""

from .base import TASKS, Sample, Task, get_task, register, register_task

__all__ = ["TASKS", "Sample", "Task", "get_task", "register", "register_task"]
