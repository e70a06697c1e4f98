"""The shared training loop, its batching, schedules and metrics."""

from .loop import train

__all__ = ["train"]
