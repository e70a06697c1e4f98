"""Anomaly scoring: a document is unusual when a model trained on normal text cannot rebuild it."""

from .detector import AGGREGATES, DEFAULT_SCORER, DETECTOR_DIR, NO_FIT_SCORER, SCORERS, AnomalyDetector
from .job import JobSummary, load_detector, score_file

__all__ = ["AGGREGATES", "DEFAULT_SCORER", "DETECTOR_DIR", "NO_FIT_SCORER", "SCORERS", "AnomalyDetector", "JobSummary", "load_detector", "score_file"]
