"""Pipeline: unsupervised summarisation with the text family, evaluated on news lead → title.

    python -m pipelines.summarization [--config configs/text.yaml] [--workdir runs/summarization]
        [--init-from AE_DIR] [--pretrain-steps N] [--train-steps N] [--max-words 10] [--set k=v ...]
        [--results FILE]

Training reads news article sentences only (the `text` column); titles are read by the evaluate
stage alone. Stages (each skipped when its outputs are newer than its inputs and its parameters
are unchanged; a killed training stage resumes from its last checkpoint):
  prepare          → WORKDIR/pairs.jsonl          the lead → title evaluation pairs
  pretrain         → WORKDIR/pretrain/final/      reconstructor learns from random word subsets; the
                                                  compressor learns the frozen sentence encoder's word
                                                  salience; the critic and the prior LM learn real text
  train            → WORKDIR/train/final/         REINFORCE on reconstruction + similarity + WGAN-GP critic
  no_discriminator → WORKDIR/no_discriminator/    ablation: the same without the critic
  prior            → WORKDIR/prior/final/         the LM prior instead of the critic
  evaluate         → WORKDIR/eval.json            ROUGE of every system and of Lead-8 / Lead-10
  report           → WORKDIR/report.md, WORKDIR/summarization.json (and --results)
"""

from __future__ import annotations

import json
import random
import sys
from pathlib import Path

import click

from textae import load, load_config
from textae.cli import configure_logging
from textae.config import parse_overrides
from textae.errors import TextAEError
from textae.data import DataConfig, prepare
from textae.similarity import SentenceEncoder
from textae.summaries import attested_bigrams, lead, lead_title_pairs, rouge, salience_summaries, timed

from .autoencoder import _train_stage
from .stages import Stage, run_pipeline

PRIOR_WEIGHT = 0.5
# `random_steps` beyond any run's length: the pre-train never leaves the random-words warm-up.
ALWAYS_RANDOM_WORDS = 10**9
TEACHER_PAIRS = 300
# name → the text-family options that make the variant (over the config's own)
VARIANTS = {
    "train": {},
    "no_discriminator": {"adversarial_weight": 0.0},
    "prior": {"adversarial_weight": 0.0, "prior_weight": PRIOR_WEIGHT},
}


def _prepare(out: Path, limit: int | None) -> None:
    pairs = lead_title_pairs()[:limit]
    out.write_text("".join(json.dumps(p, ensure_ascii=False) + "\n" for p in pairs))


def _evaluate(pairs_path: Path, finals: dict[str, Path], data: DataConfig, max_words: int, out: Path) -> None:
    pairs = [json.loads(l) for l in pairs_path.read_text().splitlines()]
    sources, titles = [p["source"] for p in pairs], [p["title"] for p in pairs]
    corpus = prepare(data)["train"]["text"]  # the training sentences: what "real text" means for readability
    result: dict = {"pairs": len(pairs), "max_words": max_words, "systems": {}, "summaries": {}}
    score = lambda summaries: rouge(summaries, titles) | {"attested_bigrams": attested_bigrams(summaries, corpus)}
    for n in (8, 10):
        result["systems"][f"lead{n}"] = score(lead(sources, n))
    result["systems"]["titles"] = {"attested_bigrams": attested_bigrams(titles, corpus)}
    for name, final in finals.items():
        codec = load(final, device="cpu")
        summaries, per_s = timed(lambda: codec.summarize(sources, max_words=max_words, progress=True))
        result["systems"][name] = score(summaries) | {"sentences_per_s": per_s}
        result["summaries"][name] = summaries
    # The sentence encoder's own choice, on a sample: how far the compressor is from its teacher.
    sample = random.Random(1).sample(range(len(pairs)), min(TEACHER_PAIRS, len(pairs)))
    pick = lambda xs: [xs[i] for i in sample]
    teacher = salience_summaries(pick(sources), SentenceEncoder("cpu"), max_words)
    result["teacher_sample"] = {"pairs": len(sample), "teacher": rouge(teacher, pick(titles)),
                                "lead8": rouge(lead(pick(sources), 8), pick(titles)),
                                "train": rouge(pick(result["summaries"]["train"]), pick(titles))}
    out.write_text(json.dumps(result, indent=1) + "\n")


def _figures(system: dict) -> dict:
    return {k: system[k] for k in ("rouge1", "rouge2", "rougeL", "avg_words", "attested_bigrams")}


def _report(eval_json: Path, pairs_path: Path, workdir: Path, command: str, results: Path | None) -> None:
    ev = json.loads(eval_json.read_text())
    pairs = [json.loads(l) for l in pairs_path.read_text().splitlines()]
    systems = ev["systems"]
    main, lead8, teacher = systems["train"], systems["lead8"], ev["teacher_sample"]
    summary = {
        "rouge1": main["rouge1"], "rouge2": main["rouge2"], "rougeL": main["rougeL"], "avg_words": main["avg_words"],
        "attested_bigrams": main["attested_bigrams"], "titles_attested_bigrams": systems["titles"]["attested_bigrams"],
        "lead8": _figures(lead8),
        "lead10": _figures(systems["lead10"]),
        "no_discriminator": _figures(systems["no_discriminator"]),
        "prior_instead_of_discriminator": _figures(systems["prior"]),
        "salience_only": _figures(systems["pretrain"]),
        "sentences_per_s": main["sentences_per_s"],
        "teacher_sample": ev["teacher_sample"],
        "target_rouge1": lead8["rouge1"] + 7,
        "pairs": ev["pairs"], "max_words": ev["max_words"],
        "device": "cpu",
        "command": command,
    }
    picks = random.Random(0).sample(range(len(pairs)), min(20, len(pairs)))
    summary["examples"] = [{"source": pairs[i]["source"], "summary": ev["summaries"]["train"][i], "title": pairs[i]["title"]}
                           for i in picks]
    (workdir / "summarization.json").write_text(json.dumps(summary, indent=1, ensure_ascii=False) + "\n")
    if results is not None:
        results.parent.mkdir(parents=True, exist_ok=True)
        results.write_text(json.dumps(summary, indent=1, ensure_ascii=False) + "\n")
    rows = "\n".join(
        f"| {name} | {s['rouge1']:.2f} | {s['rouge2']:.2f} | {s['rougeL']:.2f} | {s['avg_words']:.1f} | {s['attested_bigrams']:.1f} |"
        for name, s in systems.items() if "rouge1" in s
    )
    examples = "\n".join(f"| {e['source']} | {e['summary']} | {e['title']} |" for e in summary["examples"])
    (workdir / "report.md").write_text(
        f"# Summarisation report: news lead → title\n\n{ev['pairs']} pairs, at most {ev['max_words']} words per summary; "
        f"target ROUGE-1 = Lead-8 + 7 = {summary['target_rouge1']:.2f}.\n\n"
        f"| system | ROUGE-1 | ROUGE-2 | ROUGE-L | words | attested bigrams % |\n|---|---|---|---|---|---|\n{rows}\n\n"
        f"Attested bigrams: the share of a summary's adjacent word pairs found in the training sentences "
        f"(a readability proxy; the titles score {systems['titles']['attested_bigrams']:.1f}).\n\n"
        f"Summaries per second (CPU): {main['sentences_per_s']:.0f}\n\n"
        f"The compressor's teacher, on {teacher['pairs']} random pairs: the sentence encoder's own choice of words "
        f"(it needs the encoder at summary time, so it is no summariser) scores ROUGE-1 {teacher['teacher']['rouge1']:.2f}, the trained "
        f"compressor {teacher['train']['rouge1']:.2f} and Lead-8 {teacher['lead8']['rouge1']:.2f} on the same pairs.\n\n"
        f"## 20 random examples\n\n| source | summary | title |\n|---|---|---|\n{examples}\n"
    )


@click.command()
@click.option("--config", "config_path", type=click.Path(dir_okay=False), default="configs/text.yaml", show_default=True,
              help="Text-family YAML config.")
@click.option("--workdir", type=click.Path(file_okay=False), default="runs/summarization", show_default=True)
@click.option("--init-from", type=click.Path(file_okay=False), default=None,
              help="A trained foundation autoencoder (same sizes) to start the pre-train from: its encoder starts "
                   "the compressor and the reader, its decoder the reconstructor's.")
@click.option("--pretrain-steps", type=int, default=800, show_default=True, help="Reconstructor steps on random word subsets.")
@click.option("--train-steps", type=int, default=200, show_default=True, help="Steps of each trained variant.")
@click.option("--max-words", type=int, default=10, show_default=True, help="Word budget of the evaluated summaries.")
@click.option("--eval-pairs", type=int, default=None, help="Evaluate on the first N pairs only (quick runs). Default: all.")
@click.option("--set", "sets", multiple=True, metavar="SECTION.KEY=VALUE", help="Override a config value (repeatable).")
@click.option("--results", type=click.Path(dir_okay=False), default=None, help="Also write summarization.json here.")
@click.option("--force", is_flag=True, help="Re-run every stage, retraining from scratch.")
def main(config_path, workdir, init_from, pretrain_steps, train_steps, max_words, eval_pairs, sets, results, force) -> None:
    """prepare → pretrain → train (+ ablations) → evaluate → report, skipping stages that are up to date."""
    configure_logging()
    work = Path(workdir)
    work.mkdir(parents=True, exist_ok=True)
    command = "python -m pipelines.summarization " + " ".join(sys.argv[1:])

    def build() -> list[Stage]:
        overrides = parse_overrides(sets)
        base = load_config(config_path, overrides)
        if base.model.get("family") != "text":
            raise TextAEError(f"{config_path} is not a text-family config (model.family: text)")
        options = dict(base.model.get("bottleneck", {}))

        def run_config(name: str, steps: int, extra: dict, init_from: Path | None = None):
            values = {**overrides, "train.output_dir": str(work / name), "train.max_steps": steps,
                      "train.max_minutes": None, "model.bottleneck": {**options, **extra}}
            if init_from is not None:
                values |= {"train.init_from": str(init_from), "train.warmup_steps": 20}
            return load_config(config_path, values)

        pairs = work / "pairs.jsonl"
        # Random words only: the compressor learns salience alone, and the readability weights change
        # nothing but build the critic and the prior LM, so every variant starts with both trained.
        pre = run_config("pretrain", pretrain_steps, {"random_steps": ALWAYS_RANDOM_WORDS, "prior_weight": PRIOR_WEIGHT}, init_from)
        stages = [
            Stage("prepare", lambda: _prepare(pairs, eval_pairs), [pairs], params={"eval_pairs": eval_pairs}),
            Stage("pretrain", lambda: _train_stage(pre, work / "pretrain", force), [work / "pretrain/final/model.safetensors"],
                  params=pre.to_dict()),
        ]
        finals = {"pretrain": work / "pretrain/final"}  # the compressor after salience alone, before REINFORCE
        for name, extra in VARIANTS.items():
            cfg = run_config(name, train_steps, {**extra, "random_steps": 0}, work / "pretrain/final")
            finals[name] = work / name / "final"
            stages.append(Stage(name, lambda cfg=cfg, name=name: _train_stage(cfg, work / name, force),
                                [finals[name] / "model.safetensors"], [work / "pretrain/final/model.safetensors"],
                                params=cfg.to_dict()))
        stages += [
            Stage("evaluate", lambda: _evaluate(pairs, finals, base.data, max_words, work / "eval.json"), [work / "eval.json"],
                  [pairs, *(f / "model.safetensors" for f in finals.values())],
                  params={"max_words": max_words, "data": base.data, "metrics": ["rouge", "attested_bigrams"],
                          "teacher_pairs": TEACHER_PAIRS, "systems": sorted(finals)}),
            Stage("report", lambda: _report(work / "eval.json", pairs, work, command, Path(results) if results else None),
                  [work / "report.md", work / "summarization.json"], [work / "eval.json"], params={"results": results}),
        ]
        return stages

    run_pipeline(build, work / "report.md", force)


if __name__ == "__main__":
    main()
