"""The trainer: a tiny model overfits a handful of sentences; a killed run resumes to the same result."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import sacrebleu

import textae
from textae.errors import TextAEError

from .conftest import SENTENCES, tiny_overrides


def test_tiny_model_overfits_and_rebuilds_its_sentences(trained_model):
    final = trained_model()
    run = final.parent
    for name in ("config.json", "model.safetensors", "tokenizer.json", "train_config.yaml"):
        assert (final / name).is_file(), name
    ae = textae.load(final)
    heldout = (run / "heldout.txt").read_text().splitlines()
    seen = [s for s in SENTENCES if s not in heldout]
    assert len(heldout) == 1 and len(seen) == len(SENTENCES) - 1
    assert ae.reconstruct(seen) == seen
    events = [json.loads(l) for l in (run / "metrics.jsonl").read_text().splitlines()]
    # The last evaluation is of the saved model: its metrics are what that model does to heldout.txt.
    rebuilt = ae.reconstruct(heldout)
    assert events[-1]["step"] == 300
    assert events[-1]["exact_match"] == sum(r == h for r, h in zip(rebuilt, heldout)) / len(heldout)
    assert events[-1]["bleu"] == pytest.approx(sacrebleu.corpus_bleu(rebuilt, [heldout]).score, abs=1e-3)
    losses = [e["reconstruction"] for e in events if "reconstruction" in e]
    assert losses[-1] < losses[0] / 10


def test_refuses_to_overwrite_a_run_without_resume(trained_model, tmp_path):
    run = shutil.copytree(trained_model().parent, tmp_path / "run")
    cfg = textae.load_config(run / "config.yaml", {"train.output_dir": str(run)})  # the run's own config
    with pytest.raises(TextAEError, match="--resume"):
        textae.train(cfg, progress=False)


def _cli(args: list[str], **kw) -> subprocess.Popen:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen([sys.executable, "-m", "textae", "train", "--no-progress", *args], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, **kw)


def _sets(corpus: Path, out: Path) -> list[str]:
    values = tiny_overrides(corpus, out, **{"train.max_steps": 120, "train.save_every": 10, "train.eval_every": 60,
                                            "model.dropout": 0.1, "noise.word_dropout": 0.2, "noise.mask_rate": 0.15})
    return [a for k, v in values.items() for a in ("--set", f"{k}={'null' if v is None else v}")]


def _last_loss(run: Path) -> dict:
    events = [json.loads(l) for l in (run / "metrics.jsonl").read_text().splitlines()]
    return [e for e in events if "loss" in e][-1]


@pytest.mark.slow
def test_killed_run_resumes_to_the_same_loss_as_an_uninterrupted_one(corpus, tmp_path):
    whole, killed = tmp_path / "whole", tmp_path / "killed"
    assert _cli(_sets(corpus, whole)).wait(timeout=300) == 0

    proc = _cli(_sets(corpus, killed))
    deadline = time.time() + 240
    while not (killed / "checkpoints" / "step-10" / "train_state.json").exists():
        assert proc.poll() is None and time.time() < deadline, proc.stdout.read() if proc.poll() is not None else "timeout"
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (killed / "final").exists(), "the run finished before it could be killed"

    resumed = _cli([*_sets(corpus, killed), "--resume"])
    output = resumed.communicate(timeout=300)[0]
    assert resumed.returncode == 0, output
    assert "resumed from" in output
    a, b = _last_loss(whole), _last_loss(killed)
    assert a["step"] == b["step"] == 120
    assert b["loss"] == pytest.approx(a["loss"], abs=1e-4)
    steps = [json.loads(l)["step"] for l in (killed / "metrics.jsonl").read_text().splitlines() if "loss" in l]
    assert steps == sorted(set(steps)), "metrics after the checkpoint must not be duplicated"
