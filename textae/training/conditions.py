"""Labels for conditional families: the label vocabulary and each training row's label id."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import datasets

from ..errors import TextAEError
from ..exemplars import INSERT_LEAD
from ..modeling import get_family
from ..markers import MarkerTable, find_exemplars, find_markers
from ..modeling.bottlenecks.cvae import UNKNOWN, label_ids
from ..tokenizer import sentence_ends, word_starts

MARKER_ROWS = 200_000  # training rows the label markers, exemplars and typical leads are found on

MAX_LABELS = 100  # more distinct values than this (or than half the rows) is free text, not a label


def conditions(
    model: dict[str, Any], data: datasets.DatasetDict, source: str
) -> tuple[dict[str, Any], dict[str, list[int]] | None]:
    """(the model section with the label vocabulary filled in, label ids per row of each split), or
    (model, None) for families that read no label. The vocabulary comes from the training split;
    rows without one of its labels get UNKNOWN: the model guesses theirs, and they teach only
    reconstruction."""
    family = get_family(model["family"])
    if not family.conditional:
        return model, None
    train = data["train"]
    options = family.make_options(model.get("bottleneck"))
    column = options.label_column
    if column not in train.column_names:
        raise TextAEError(
            f"--family {family.name} conditions on the column '{column}', which {source} does not have "
            f"(columns: {', '.join(train.column_names)}); name it with --set model.bottleneck='{{label_column: NAME}}'"
        )
    values = train[column]
    labels = [str(v) for v in options.labels] or sorted({str(v) for v in values if v is not None})
    ids = label_ids(values, labels)
    labelled = sum(i != UNKNOWN for i in ids)
    if not labelled:
        raise TextAEError(f"no training row of {source} has one of the labels {labels} in column '{column}'")
    if not 2 <= len(labels) <= min(MAX_LABELS, labelled / 2):
        raise TextAEError(
            f"column '{column}' of {source} holds {len(labels)} distinct value(s) in {labelled} labelled rows; a {family.name} model "
            f"needs 2 to {MAX_LABELS} labels, each on several rows (a categorical column such as ham/spam or a question type)"
        )
    split_ids = {name: ids if name == "train" else label_ids(split[column], labels) for name, split in data.items()}
    return {**model, "bottleneck": {**(model.get("bottleneck") or {}), "labels": labels}}, split_ids


def with_markers(model: dict[str, Any], tokenizer, rows: Sequence[Sequence[int]], labels: Sequence[int]) -> dict[str, Any]:
    """The model section with its label markers found on the training rows (token ids), and the
    exemplars and typical leads they give (`textae.markers.find_exemplars`), for families that
    delete them from their input (cae); unchanged for the others, or when the markers are given."""
    family = get_family(model["family"])
    if not family.infills:
        return model
    options = family.make_options(model.get("bottleneck"))
    section = {**model["bottleneck"], "vocab_size": len(tokenizer)}
    if options.markers:
        return {**model, "bottleneck": section}
    starts = word_starts(tokenizer)
    markers = find_markers(rows, labels, len(options.labels), starts,
                           options.marker_max_words, options.marker_ratio, options.marker_min_count)
    if not markers:
        raise TextAEError(f"no word marks any label of column '{options.label_column}' (marker_ratio {options.marker_ratio}, "
                          f"marker_min_count {options.marker_min_count}); lower them with --set model.bottleneck=...")
    table = MarkerTable(markers, len(options.labels), starts)
    exemplars, leads = find_exemplars(rows, labels, table, sentence_ends(tokenizer), options.exemplars_per_label,
                                      INSERT_LEAD, cut_length=model["max_positions"] - 1)  # the rows' cut, leaving room for EOS
    return {**model, "bottleneck": {**section, "markers": markers, "exemplars": exemplars, "typical_leads": leads}}
