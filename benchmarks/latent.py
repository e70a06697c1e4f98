"""Benchmark: the VAE and VQ families on news sentences — latent health, reconstruction, paraphrase.

Every model is trained with the `textae train` CLI, exactly as a user would:
  ae    the default plain autoencoder, shortened (the start every other run is initialised from)
  vae   --family vae --init-from ae: cyclical β, free bits, word dropout, AE initialisation
  vae-* the same with one anti-collapse trick switched off (the ablation table)
  vq    --family vq --init-from ae
A finished run of the same command is reused (delete runs/bench-latent or pass --fresh to retrain). Then:
- latent figures: every final model evaluated on the same 256 held-out news sentences (the
  validation split training evaluates on; the VAE's NLL bound uses 16 importance samples, its
  MI estimate 8 draws of z per sentence);
- paraphrase: `textae.latent.paraphrase` on 500 held-out news sentences, judged with
  all-MiniLM-L6-v2 (similarity to the source), self-BLEU to the source and copy rate;
- other domains: the news-trained VAE and VQ evaluated on SMS messages and TREC questions;
- a map of the VAE codes of held-out news and SMS sentences (`textae plot`).
Writes benchmarks/results/latent.json and latent_map.png.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

from common import device_name, train_run

RESULTS = Path(__file__).parent / "results"
STEPS = 1000  # every VAE / VQ run: 4 β cycles of 250 steps, about 5 minutes on 2 CPU cores
VAE = "model.bottleneck={beta_steps: 250%s}"


def runs(root: Path) -> dict[str, list[str]]:
    ae = str(root / "ae" / "final")
    vae = ["--family", "vae", "--max-steps", str(STEPS)]
    return {
        "ae": ["--max-steps", "1500"],
        "vae": [*vae, "--init-from", ae, "--set", VAE % ""],
        "vae-no-cyclical-beta": [*vae, "--init-from", ae, "--set", VAE % ", beta_schedule: constant"],
        "vae-no-free-bits": [*vae, "--init-from", ae, "--set", VAE % ", free_bits: 0.0"],
        "vae-no-word-dropout": [*vae, "--init-from", ae, "--set", VAE % "", "--set", "noise.word_dropout=0.0"],
        "vae-no-ae-init": [*vae, "--set", VAE % ""],
        "vq": ["--family", "vq", "--max-steps", str(STEPS), "--init-from", ae],
    }


def last_eval(run: Path) -> dict:
    return [e for e in map(json.loads, (run / "metrics.jsonl").read_text().splitlines()) if "bleu" in e][-1]


def heldout(source: str, n: int) -> list[str]:
    from textae.data import SENTENCE_MAX_WORDS, SENTENCE_MIN_WORDS, DataConfig, prepare

    split = source != "news"  # news: the training split's own held-out sentences; others: whole messages
    cfg = DataConfig(source=source, split_sentences=not split, min_words=SENTENCE_MIN_WORDS, max_words=SENTENCE_MAX_WORDS,
                     validation_size=0.05 if not split else n)
    return list(prepare(cfg)["validation"]["text"][:n])


def domain_metrics(model_dir: Path, texts: list[str]) -> dict:
    """Held-out evaluation (loss, latent metrics, BLEU) of a model on any texts."""
    import textae
    from textae.noise import NoiseConfig
    from textae.tokenizer import tokenize
    from textae.training.batching import Collator
    from textae.training.evaluate import evaluate

    ae = textae.load(model_dir)
    collator = Collator.for_tokenizer(ae.tokenizer, NoiseConfig())
    result = evaluate(ae, tokenize(texts, ae.tokenizer, ae.model.config.max_positions), texts, collator)
    return {k: round(v, 4) for k, v in result.items()}


def paraphrase_figures(model_dir: Path, texts: list[str], encoder) -> dict:
    import textae
    from textae.latent import paraphrase
    from textae.training.metrics import bleu

    ae = textae.load(model_dir)
    start = time.perf_counter()
    found, stats = paraphrase(ae, texts, n=1)
    seconds = time.perf_counter() - start
    top = {p.index: p.text for p in found if p.rank == 1}
    sources = [texts[i] for i in sorted(top)]
    outputs = [top[i] for i in sorted(top)]
    rebuilt = ae.reconstruct(texts)
    return {
        "similarity": round(float(encoder.similarity(sources, outputs).mean()), 4),
        "self_bleu": round(bleu(outputs, sources), 2),
        "copy_rate": round(stats["copy_rate"], 4),
        "inputs_without_paraphrase": round(stats["inputs_without_paraphrase"], 4),
        "candidates_decoded": stats["generated"],
        "seconds": round(seconds, 1),
        "examples": [{"source": s, "paraphrase": o} for s, o in list(zip(sources, outputs))[:5]],
        "reconstruction_row": {  # no perturbation: the similarity ceiling and the self-BLEU of plain copying
            "similarity": round(float(encoder.similarity(texts, rebuilt).mean()), 4),
            "self_bleu": round(bleu(rebuilt, texts), 2),
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", type=Path, default=Path("runs/bench-latent"))
    parser.add_argument("--fresh", action="store_true", help="retrain every run")
    parser.add_argument("--paraphrase-sentences", type=int, default=500)
    parser.add_argument("--quick", action="store_true", help="smoke test: 30 steps per run on 2,000 sentences (figures meaningless)")
    args = parser.parse_args()
    root = args.root
    quick = ["--max-steps", "30", "--set", "data.max_examples=2000", "--set", "train.eval_sentences=32"] if args.quick else []
    commands, minutes, logged, evals = {}, {}, {}, {}
    for name, run_args in runs(root).items():
        commands[name], minutes[name] = train_run(root, name, run_args + quick, args.fresh)
        logged[name] = last_eval(root / name)
    # Every figure recomputed here on the same held-out sentences, whatever code trained the runs.
    n_latent, n_paraphrase = (32, 20) if args.quick else (256, args.paraphrase_sentences)
    validation = heldout("news", max(n_latent, n_paraphrase))  # one pass over the news corpus
    heldout_news, news = validation[:n_latent], validation[:n_paraphrase]
    for name in logged:
        evals[name] = {**domain_metrics(root / name / "final", heldout_news), "step": logged[name]["step"],
                       "minutes": logged[name]["minutes"]}
        print(f"{name}: {json.dumps(evals[name])}", flush=True)

    from textae.similarity import SentenceEncoder
    from textae.training.metrics import bleu

    encoder = SentenceEncoder()
    paraphrases = {name: paraphrase_figures(root / name / "final", news, encoder) for name in ("vae", "vq", "ae")}
    shuffled = news[1:] + news[:1]  # a random other sentence: the similarity floor
    paraphrases["random_sentence_row"] = {"similarity": round(float(encoder.similarity(news, shuffled).mean()), 4),
                                          "self_bleu": round(bleu(shuffled, news), 2)}
    domains = {src: heldout(src, 32 if args.quick else 256) for src in ("sms", "trec")}
    other = {name: {src: domain_metrics(root / name / "final", texts) for src, texts in domains.items()} for name in ("vae", "vq")}
    map_path = (root if args.quick else RESULTS) / "latent_map.png"
    plot_cmd = ["textae", "plot", "--model", str(root / "vae" / "final"), "--data", "news", "--data", "sms",
                "--max-points", "1000", "--output", str(map_path)]
    subprocess.run([sys.executable, "-m", "textae", *plot_cmd[1:]], check=True)

    vae, vq = evals["vae"], evals["vq"]
    vae_cfg = json.loads((root / "vae" / "final" / "config.json").read_text())
    vq_cfg = json.loads((root / "vq" / "final" / "config.json").read_text())
    keys = ("active_units", "mi", "kl", "nll", "ppl", "bleu", "exact_match")
    result = {
        "vae": {"latent_dim": vae_cfg["bottleneck"].get("latent_dim", 32), **{k: vae[k] for k in keys},
                "steps": vae["step"], "train_minutes": vae["minutes"], "wall_minutes_with_eval": minutes["vae"]},
        "vq": {"codebook_size": vq_cfg["bottleneck"].get("codebook_size", 512), "heads": vq_cfg["bottleneck"].get("heads", 4),
               "integers_per_sentence": vq_cfg["num_codes"] * vq_cfg["bottleneck"].get("heads", 4),
               "usage": vq["codebook_usage"], "perplexity": vq["code_perplexity"], "bleu": vq["bleu"],
               "exact_match": vq["exact_match"], "steps": vq["step"], "train_minutes": vq["minutes"], "wall_minutes_with_eval": minutes["vq"]},
        "ae_init": {"bleu": evals["ae"]["bleu"], "exact_match": evals["ae"]["exact_match"], "steps": evals["ae"]["step"],
                    "train_minutes": evals["ae"]["minutes"], "wall_minutes_with_eval": minutes["ae"]},
        "ablation": {name: {k: evals[name].get(k) for k in keys} for name in evals if name.startswith("vae")},
        "paraphrase": {k: paraphrases["vae"][k] for k in ("similarity", "self_bleu", "copy_rate")},
        "paraphrase_detail": paraphrases,
        "other_domains": other,
        "train_commands": {name: " ".join(c) for name, c in commands.items()},
        "plot_command": " ".join(plot_cmd),
        "heldout": "256 news validation sentences for the latent figures; the first 500 for paraphrase",
        "device": device_name(),
        "command": "python benchmarks/latent.py",
    }
    if args.quick:
        print(json.dumps(result, indent=1)[:3000])
        return
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "latent.json").write_text(json.dumps(result, indent=2) + "\n")

    print(f"\n{'run':24} {'active':>6} {'MI':>6} {'KL':>7} {'NLL':>7} {'PPL':>7} {'BLEU':>6}")
    for name, e in result["ablation"].items():
        print(f"{name:24} {e['active_units']:>6} {e['mi']:6.2f} {e['kl']:7.2f} {e['nll']:7.2f} {e['ppl']:7.1f} {e['bleu']:6.1f}")
    print(f"vq: usage {vq['codebook_usage']:.3f}  perplexity {vq['code_perplexity']:.1f}  BLEU {vq['bleu']:.1f}")
    print(f"ae init: BLEU {evals['ae']['bleu']:.1f}")
    print(f"\n{'paraphrase (500 news)':24} {'sim':>6} {'selfBLEU':>9} {'copy':>6}")
    for name, p in paraphrases.items():
        print(f"{name:24} {p['similarity']:6.3f} {p['self_bleu']:9.1f} {p.get('copy_rate', float('nan')):6.3f}")
    for name, domains in other.items():
        for src, m in domains.items():
            print(f"other domain {name} {src}: BLEU {m['bleu']:.1f} " + " ".join(f"{k} {m[k]}" for k in ("active_units", "mi", "codebook_usage") if k in m))
    print(f"device {result['device']}")


if __name__ == "__main__":
    main()
