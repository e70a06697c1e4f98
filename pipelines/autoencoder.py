"""Pipeline: train an autoencoder → reconstruct its held-out sentences → write a report.

    python -m pipelines.autoencoder [--config configs/default.yaml] [--workdir runs/pipeline] [--set k=v ...]

Stages (each skipped when its output is newer than its inputs and its parameters are unchanged):
  train     → WORKDIR/run/final/          (resumes a killed run from its last checkpoint)
  evaluate  → WORKDIR/eval.json           (BLEU / exact match of greedy reconstructions)
  report    → WORKDIR/report.md + curve.png
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import click

from textae import load, load_config, train
from textae.cli import configure_logging
from textae.config import parse_overrides
from textae.errors import TextAEError
from textae.training.metrics import bleu, exact_match

from .stages import Stage, run_pipeline


def _train_stage(cfg, run_dir: Path, force: bool) -> None:
    saved = run_dir / "config.yaml"
    if saved.is_file() and load_config(saved) != cfg:
        if not force:
            raise TextAEError(f"{run_dir} was trained with another config; pass --force to retrain it from scratch")
        shutil.rmtree(run_dir)
    train(cfg, resume=saved.is_file(), progress=True)


def _evaluate(final: Path, heldout: Path, out: Path) -> None:
    references = heldout.read_text().splitlines()
    hypotheses = load(final).reconstruct(references, progress=True)
    result = {
        "bleu": bleu(hypotheses, references),
        "exact_match": exact_match(hypotheses, references),
        "sentences": len(references),
        "examples": [{"text": r, "reconstruction": h} for r, h in zip(references[:20], hypotheses[:20])],
    }
    out.write_text(json.dumps(result, indent=2) + "\n")


def _report(eval_json: Path, metrics: Path, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    result = json.loads(eval_json.read_text())
    evals = [e for e in map(json.loads, metrics.read_text().splitlines()) if "bleu" in e]
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.plot([e["minutes"] for e in evals], [e["bleu"] for e in evals], marker="o")
    ax.set_xlabel("training minutes")
    ax.set_ylabel("held-out BLEU")
    fig.tight_layout()
    fig.savefig(out.parent / "curve.png", dpi=120)
    rows = "\n".join(f"| {e['text']} | {e['reconstruction']} |" for e in result["examples"])
    out.write_text(
        f"# Autoencoder report\n\nHeld-out sentences: {result['sentences']}  \n"
        f"BLEU: {result['bleu']:.1f}  \nExact match: {100 * result['exact_match']:.1f} %\n\n"
        f"![BLEU against training minutes](curve.png)\n\n| sentence | reconstruction |\n|---|---|\n{rows}\n"
    )


@click.command()
@click.option("--config", "config_path", type=click.Path(dir_okay=False), default=None, help="YAML config; default: the built-in defaults.")
@click.option("--workdir", type=click.Path(file_okay=False), default="runs/pipeline", show_default=True, help="Where every stage writes.")
@click.option("--set", "sets", multiple=True, metavar="SECTION.KEY=VALUE", help="Override a config value (repeatable).")
@click.option("--force", is_flag=True, help="Re-run every stage, retraining from scratch.")
def main(config_path: str | None, workdir: str, sets: tuple[str, ...], force: bool) -> None:
    """Train → evaluate → report, skipping stages that are up to date."""
    configure_logging()
    work = Path(workdir)
    run_dir = work / "run"

    def build() -> list[Stage]:
        overrides = parse_overrides(sets)
        overrides["train.output_dir"] = str(run_dir)
        cfg = load_config(config_path, overrides)
        final = run_dir / "final"
        return [
            Stage("train", lambda: _train_stage(cfg, run_dir, force), [final / "model.safetensors"], params=cfg.to_dict()),
            Stage("evaluate", lambda: _evaluate(final, run_dir / "heldout.txt", work / "eval.json"),
                  [work / "eval.json"], [final / "model.safetensors"]),
            Stage("report", lambda: _report(work / "eval.json", run_dir / "metrics.jsonl", work / "report.md"),
                  [work / "report.md"], [work / "eval.json"]),
        ]

    run_pipeline(build, work / "report.md", force)


if __name__ == "__main__":
    main()
