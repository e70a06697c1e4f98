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
  fluency          → WORKDIR/fluency/final/       the corpus LM also scores each break of a summary
  eval_lm          → WORKDIR/eval-lm/             a GPT-2-style LM of the training sentences that only
                                                  judges readability (per-token NLL); no model trains on it
  evaluate         → WORKDIR/eval.json            ROUGE, attested bigrams and eval-LM NLL of every system,
                                                  of Lead-8 / Lead-10 and of the titles; the trained model
                                                  without its phrase cost (no_fluency) and across phrase
                                                  weights; the LM variant without it (lm_only); readability
                                                  on SMS and TREC
  report           → WORKDIR/report.md, WORKDIR/summarization.json, phrase_sweep.png (and --results)
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

from benchmarks.peer_lm import PeerLM
from benchmarks.peer_lm import train as train_eval_lm

from .autoencoder import _train_stage
from .stages import Stage, run_pipeline

PRIOR_WEIGHT = 0.5
# `random_steps` beyond any run's length: the pre-train never leaves the random-words warm-up.
ALWAYS_RANDOM_WORDS = 10**9
TEACHER_PAIRS = 300
PHRASE_SWEEP = (0.0, 0.5, 1.0, 2.0, 4.0, 8.0)  # phrase weights tried at summary time on the trained model
OTHER_DOMAINS = ("sms", "trec")
OTHER_DOMAIN_TEXTS = 1000
EVAL_LM_SEED = 7  # not the seed of any trained variant
FLUENCY_WEIGHT = 0.25
# name → the text-family options that make the variant (over the config's own)
VARIANTS = {
    "train": {},
    "no_discriminator": {"adversarial_weight": 0.0},
    "prior": {"adversarial_weight": 0.0, "prior_weight": PRIOR_WEIGHT},
    "fluency": {"fluency_weight": FLUENCY_WEIGHT},  # the corpus LM also scores each break between phrases
}


def _prepare(out: Path, limit: int | None) -> None:
    pairs = lead_title_pairs()[:limit]
    out.write_text("".join(json.dumps(p, ensure_ascii=False) + "\n" for p in pairs))


def _domain_texts(name: str, n: int) -> list[str]:
    """n held-out texts of another domain (whole messages / questions, as written)."""
    from textae.data import SENTENCE_MAX_WORDS, SENTENCE_MIN_WORDS

    cfg = DataConfig(source=name, split_sentences=False, min_words=SENTENCE_MIN_WORDS, max_words=SENTENCE_MAX_WORDS,
                     validation_size=n)
    return list(prepare(cfg)["validation"]["text"])


def _evaluate(pairs_path: Path, finals: dict[str, Path], data: DataConfig, max_words: int, eval_lm: Path, out: Path) -> None:
    pairs = [json.loads(l) for l in pairs_path.read_text().splitlines()]
    sources, titles = [p["source"] for p in pairs], [p["title"] for p in pairs]
    corpus = list(prepare(data)["train"]["text"])  # the training sentences: what "real text" means for readability
    judge = PeerLM(eval_lm)
    result: dict = {"pairs": len(pairs), "max_words": max_words, "systems": {}, "summaries": {},
                    "eval_lm": json.loads((eval_lm / "peer_lm.json").read_text())}

    def readable(texts: list[str], real: list[str]) -> dict:
        return {"attested_bigrams": attested_bigrams(texts, real), "readability": float(judge.token_nll(texts).mean())}

    score = lambda summaries: rouge(summaries, titles) | readable(summaries, corpus)
    for n in (8, 10):
        result["systems"][f"lead{n}"] = score(lead(sources, n))
    result["systems"]["titles"] = readable(titles, corpus) | {"avg_words": sum(len(t.split()) for t in titles) / len(titles)}
    for name, final in finals.items():
        codec = load(final, device="cpu")
        summaries, per_s = timed(lambda: codec.summarize(sources, max_words=max_words, progress=True))
        result["systems"][name] = score(summaries) | {"sentences_per_s": per_s}
        result["summaries"][name] = summaries
    # The readability ablation: the trained model choosing its best-scored words wherever they are; the LM
    # variant scoring breaks by the LM alone; the phrase weight swept.
    codec = load(finals["train"], device="cpu")
    for name, model, weights in (("no_fluency", codec, (0.0, 0.0)),
                                 ("lm_only", load(finals["fluency"], device="cpu"), (0.0, None))):
        result["summaries"][name] = model.summarize(sources, max_words=max_words, phrase_weight=weights[0],
                                                    fluency_weight=weights[1])
        result["systems"][name] = score(result["summaries"][name])
    result["phrase_sweep"] = [
        {"phrase_weight": w} | score(codec.summarize(sources, max_words=max_words, phrase_weight=w)) for w in PHRASE_SWEEP
    ]
    # Other domains, no references: is what the news-trained model writes on them text?
    result["other_domains"] = {}
    for domain in OTHER_DOMAINS:
        texts = _domain_texts(domain, OTHER_DOMAIN_TEXTS)
        rows = {"texts": len(texts), "source": readable(texts, texts)}
        summaries = codec.summarize(texts, max_words=max_words)
        rows["summaries"] = readable(summaries, texts)
        rows["no_fluency"] = readable(codec.summarize(texts, max_words=max_words, phrase_weight=0.0), texts)
        # Lead-N at each summary's length
        rows["lead"] = readable([" ".join(t.split()[: len(s.split())]) for t, s in zip(texts, summaries)], texts)
        rows["examples"] = [{"source": t, "summary": s} for t, s in zip(texts[:8], summaries[:8])]
        result["other_domains"][domain] = rows
    # The sentence encoder's own choice, on a sample: how far the compressor is from its teacher.
    sample = random.Random(1).sample(range(len(pairs)), min(TEACHER_PAIRS, len(pairs)))
    pick = lambda xs: [xs[i] for i in sample]
    teacher = salience_summaries(pick(sources), SentenceEncoder("cpu"), max_words)
    result["teacher_sample"] = {"pairs": len(sample), "teacher": rouge(teacher, pick(titles)),
                                "lead8": rouge(lead(pick(sources), 8), pick(titles)),
                                "train": rouge(pick(result["summaries"]["train"]), pick(titles))}
    out.write_text(json.dumps(result, indent=1) + "\n")


def _figures(system: dict) -> dict:
    return {k: system[k] for k in ("rouge1", "rouge2", "rougeL", "avg_words", "attested_bigrams", "readability")}


def _sweep_plot(sweep: list[dict], titles: dict, lead8: dict, path: Path) -> None:
    """ROUGE-1 against both readability measures as the phrase weight grows, with the titles and Lead-8."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(9, 3.6))
    weights = [r["phrase_weight"] for r in sweep]
    for ax, key, label in ((left, "attested_bigrams", "attested bigrams %"), (right, "readability", "eval-LM NLL per token")):
        ax.plot([r[key] for r in sweep], [r["rouge1"] for r in sweep], marker="o", label="text family")
        for w, r in zip(weights, sweep):
            ax.annotate(f"{w:g}", (r[key], r["rouge1"]), textcoords="offset points", xytext=(4, 4), fontsize=8)
        ax.axvline(titles[key], color="grey", linestyle=":", label="human titles")
        ax.scatter([lead8[key]], [lead8["rouge1"]], marker="s", color="black", label="Lead-8")
        ax.set_xlabel(label)
        ax.set_ylabel("ROUGE-1")
    left.legend(fontsize=8)
    fig.suptitle("news lead → title: the phrase weight (annotated) trades content for readability", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def _report(eval_json: Path, pairs_path: Path, workdir: Path, command: str, results: Path | None) -> None:
    ev = json.loads(eval_json.read_text())
    pairs = [json.loads(l) for l in pairs_path.read_text().splitlines()]
    systems = ev["systems"]
    main, lead8, titles, teacher = systems["train"], systems["lead8"], systems["titles"], ev["teacher_sample"]
    summary = {
        "rouge1": main["rouge1"], "rouge2": main["rouge2"], "rougeL": main["rougeL"], "avg_words": main["avg_words"],
        "attested_bigrams": main["attested_bigrams"], "titles_attested_bigrams": titles["attested_bigrams"],
        "readability": main["readability"], "readability_titles": titles["readability"],
        "readability_lead8": lead8["readability"], "readability_higher_is_better": False,
        "readability_measure": "mean per-token NLL (nats, EOS included) under an evaluation-only GPT-2-style LM "
                               "of the training sentences (eval_lm)",
        "readability_ablation": "no_fluency",
        "lead8": _figures(lead8),
        "lead10": _figures(systems["lead10"]),
        "no_fluency": _figures(systems["no_fluency"]),
        "with_lm": _figures(systems["fluency"]) | {"sentences_per_s": systems["fluency"]["sentences_per_s"]},
        "lm_only": _figures(systems["lm_only"]),
        "no_discriminator": _figures(systems["no_discriminator"]),
        "prior_instead_of_discriminator": _figures(systems["prior"]),
        "salience_only": _figures(systems["pretrain"]),
        "phrase_sweep": ev["phrase_sweep"],
        "other_domains": ev["other_domains"],
        "eval_lm": ev["eval_lm"],
        "sentences_per_s": main["sentences_per_s"],
        "teacher_sample": ev["teacher_sample"],
        "target_rouge1": lead8["rouge1"] + 7,
        "pairs": ev["pairs"], "max_words": ev["max_words"],
        "device": "cpu",
        "command": command,
    }
    picks = random.Random(0).sample(range(len(pairs)), min(20, len(pairs)))
    summary["examples"] = [{"source": pairs[i]["source"], "summary": ev["summaries"]["train"][i],
                            "no_fluency": ev["summaries"]["no_fluency"][i], "title": pairs[i]["title"]} for i in picks]
    text = json.dumps(summary, indent=1, ensure_ascii=False) + "\n"
    (workdir / "summarization.json").write_text(text)
    _sweep_plot(ev["phrase_sweep"], titles, lead8, workdir / "phrase_sweep.png")
    if results is not None:
        results.parent.mkdir(parents=True, exist_ok=True)
        results.write_text(text)
        _sweep_plot(ev["phrase_sweep"], titles, lead8, results.parent / "summarization_phrase_sweep.png")
    rows = "\n".join(
        f"| {name} | {s['rouge1']:.2f} | {s['rouge2']:.2f} | {s['rougeL']:.2f} | {s['avg_words']:.1f} | "
        f"{s['attested_bigrams']:.1f} | {s['readability']:.2f} |"
        for name, s in systems.items() if "rouge1" in s
    ) + f"\n| titles (references) | | | | {titles['avg_words']:.1f} | {titles['attested_bigrams']:.1f} | {titles['readability']:.2f} |"
    sweep = "\n".join(f"| {r['phrase_weight']:g} | {r['rouge1']:.2f} | {r['rouge2']:.2f} | {r['attested_bigrams']:.1f} | "
                      f"{r['readability']:.2f} |" for r in ev["phrase_sweep"])
    domains = "\n".join(
        f"| {d} | {name} | {r[name]['attested_bigrams']:.1f} | {r[name]['readability']:.2f} |"
        for d, r in ev["other_domains"].items() for name in ("source", "lead", "summaries", "no_fluency")
    )
    examples = "\n".join(f"| {e['source']} | {e['summary']} | {e['no_fluency']} | {e['title']} |" for e in summary["examples"])
    (workdir / "report.md").write_text(
        f"# Summarisation report: news lead → title\n\n{ev['pairs']} pairs, at most {ev['max_words']} words per summary; "
        f"target ROUGE-1 = Lead-8 + 7 = {summary['target_rouge1']:.2f}.\n\n"
        f"| system | ROUGE-1 | ROUGE-2 | ROUGE-L | words | attested bigrams % | eval-LM NLL |\n|---|---|---|---|---|---|---|\n{rows}\n\n"
        f"Attested bigrams: the share of a summary's adjacent word pairs found in the training sentences. "
        f"Eval-LM NLL: {summary['readability_measure']}; lower reads more like the corpus.\n\n"
        f"Summaries per second (CPU): {main['sentences_per_s']:.0f}\n\n"
        f"## Phrase weight at summary time (the trained model)\n\n| phrase_weight | ROUGE-1 | ROUGE-2 | "
        f"attested bigrams % | eval-LM NLL |\n|---|---|---|---|---|\n{sweep}\n\n"
        f"## Other domains (no references)\n\n| domain | text | attested bigrams % | eval-LM NLL |\n|---|---|---|---|\n{domains}\n\n"
        f"The compressor's teacher, on {teacher['pairs']} random pairs: the sentence encoder's own choice of words "
        f"(it needs the encoder at summary time, so it is no summariser) scores ROUGE-1 {teacher['teacher']['rouge1']:.2f}, the trained "
        f"compressor {teacher['train']['rouge1']:.2f} and Lead-8 {teacher['lead8']['rouge1']:.2f} on the same pairs.\n\n"
        f"## 20 random examples\n\n| source | summary | without fluency | title |\n|---|---|---|---|\n{examples}\n"
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
@click.option("--eval-lm-minutes", type=float, default=6.0, show_default=True,
              help="Training minutes of the evaluation-only LM that judges readability.")
@click.option("--eval-pairs", type=int, default=None, help="Evaluate on the first N pairs only (quick runs). Default: all.")
@click.option("--set", "sets", multiple=True, metavar="SECTION.KEY=VALUE", help="Override a config value (repeatable).")
@click.option("--results", type=click.Path(dir_okay=False), default=None, help="Also write summarization.json here.")
@click.option("--force", is_flag=True, help="Re-run every stage, retraining from scratch.")
def main(config_path, workdir, init_from, pretrain_steps, train_steps, max_words, eval_lm_minutes, eval_pairs, sets, results,
         force) -> None:
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
        eval_lm = work / "eval-lm"
        stages += [
            Stage("eval_lm", lambda: train_eval_lm(work / "pretrain/final", eval_lm, eval_lm_minutes, seed=EVAL_LM_SEED,
                                                       data=base.data),
                  [eval_lm / "peer_lm.json"], [work / "pretrain/final/model.safetensors"],
                  params={"minutes": eval_lm_minutes, "seed": EVAL_LM_SEED, "data": base.data}),
            Stage("evaluate", lambda: _evaluate(pairs, finals, base.data, max_words, eval_lm, work / "eval.json"),
                  [work / "eval.json"], [pairs, eval_lm / "peer_lm.json", *(f / "model.safetensors" for f in finals.values())],
                  params={"max_words": max_words, "data": base.data, "sweep": PHRASE_SWEEP, "domains": OTHER_DOMAINS,
                          "metrics": ["rouge", "attested_bigrams", "eval_lm_nll"], "teacher_pairs": TEACHER_PAIRS,
                          "systems": sorted(finals)}),
            Stage("report", lambda: _report(work / "eval.json", pairs, work, command, Path(results) if results else None),
                  [work / "report.md", work / "summarization.json"], [work / "eval.json"], params={"results": results}),
        ]
        return stages

    run_pipeline(build, work / "report.md", force)


if __name__ == "__main__":
    main()
