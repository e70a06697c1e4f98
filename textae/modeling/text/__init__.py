"""The text family: a word-picking compressor, a reconstructor and a readability critic (see model.py)."""
