"""Lessons: `lesson` says what one is, `catalogue` lists them, `checks` measures their claims."""

from .catalogue import LESSONS, find_lesson
from .lesson import CHARTS, Expectation, Lesson

__all__ = ["CHARTS", "LESSONS", "Expectation", "Lesson", "find_lesson"]
