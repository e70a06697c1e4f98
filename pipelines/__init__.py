"""Staged workflows over textae: each stage writes an artifact and is skipped when it is up to date."""
