"""Data layer: sources (built-in corpora, local files, hub) -> cleaned sentences -> train/validation."""

from textae.data.builtin import BUILTIN, Corpus, builtin_path, cache_dir
from textae.data.clean import clean_text
from textae.data.prepare import SENTENCE_MAX_WORDS, SENTENCE_MIN_WORDS, DataConfig, prepare
from textae.data.sentences import split_sentences
from textae.data.sources import load_source

__all__ = [
    "BUILTIN",
    "Corpus",
    "DataConfig",
    "SENTENCE_MAX_WORDS",
    "SENTENCE_MIN_WORDS",
    "builtin_path",
    "cache_dir",
    "clean_text",
    "load_source",
    "prepare",
    "split_sentences",
]
