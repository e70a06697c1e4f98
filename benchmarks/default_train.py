"""Benchmark: the default run (`textae train`, no config) — held-out BLEU against training minutes.

Runs the CLI exactly as a user would, then reads the run's metrics.jsonl and writes
benchmarks/results/default_train.json and default_train_curve.png.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
from pathlib import Path


from common import device_name

RESULTS = Path(__file__).parent / "results"


def other_domains(model_dir: Path, n: int = 256) -> dict[str, dict[str, float]]:
    """The news-trained model on text it never saw the like of: SMS messages and TREC questions."""
    import textae
    from textae.data import SENTENCE_MAX_WORDS, SENTENCE_MIN_WORDS, DataConfig, prepare
    from textae.training.metrics import bleu, exact_match

    ae = textae.load(model_dir)
    out = {}
    for name in ("sms", "trec"):
        cfg = DataConfig(source=name, split_sentences=False, min_words=SENTENCE_MIN_WORDS, max_words=SENTENCE_MAX_WORDS,
                         validation_size=n)
        texts = prepare(cfg)["validation"]["text"]
        references = ae.tokenizer.batch_decode(ae.token_ids(texts), skip_special_tokens=True)  # as truncated for the model
        hypotheses = ae.reconstruct(texts)
        out[name] = {"bleu": round(bleu(hypotheses, references), 2), "exact_match": round(exact_match(hypotheses, references), 4), "sentences": len(texts)}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--output", default="runs/bench-default", help="run directory (replaced)")
    parser.add_argument("--skip-train", action="store_true", help="only summarise an existing run")
    args = parser.parse_args()
    run = Path(args.output)
    train_cmd = ["textae", "train", "--output", str(run)]
    if not args.skip_train:
        shutil.rmtree(run, ignore_errors=True)  # a benchmark always measures a fresh run
        subprocess.run([sys.executable, "-m", "textae", *train_cmd[1:]], check=True)

    events = [json.loads(l) for l in (run / "metrics.jsonl").read_text().splitlines()]
    evals = [e for e in events if "bleu" in e]
    logs = [e for e in events if "tokens_per_s" in e]
    final = evals[-1]
    result = {
        "bleu": final["bleu"],
        "exact_match": final["exact_match"],
        "token_accuracy": final["token_accuracy"],
        "train_minutes": final["minutes"],
        "steps": final["step"],
        "tokens_per_s": round(sum(e["tokens_per_s"] for e in logs) / len(logs)),
        "eval_sentences": len((run / "heldout.txt").read_text().splitlines()),
        "curve": [{"minutes": e["minutes"], "step": e["step"], "bleu": e["bleu"], "exact_match": e["exact_match"]} for e in evals],
        "device": device_name(),
        "command": " ".join(train_cmd),
        "benchmark_command": "python benchmarks/default_train.py" + (f" --output {args.output}" if args.output != "runs/bench-default" else ""),
    }
    result["other_domains"] = other_domains(run / "final")
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "default_train.json").write_text(json.dumps(result, indent=2) + "\n")

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.plot([e["minutes"] for e in evals], [e["bleu"] for e in evals], marker="o", label="held-out BLEU")
    ax.plot([e["minutes"] for e in evals], [100 * e["exact_match"] for e in evals], marker=".", label="exact match %")
    ax.axhline(30, color="grey", linestyle=":", linewidth=1)
    ax.set_xlabel("training minutes")
    ax.set_ylabel("score")
    ax.set_title(f"textae default run — {result['device']}", fontsize=9)
    ax.legend()
    fig.tight_layout()
    fig.savefig(RESULTS / "default_train_curve.png", dpi=120)

    print(f"{'minutes':>8} {'step':>6} {'BLEU':>6} {'exact':>6}")
    for e in evals:
        print(f"{e['minutes']:8.1f} {e['step']:6d} {e['bleu']:6.1f} {e['exact_match']:6.2f}")
    print(f"tokens/s {result['tokens_per_s']}  device {result['device']}")
    for name, r in result["other_domains"].items():
        print(f"other domain {name}: BLEU {r['bleu']:.1f}  exact {r['exact_match']:.2f}  ({r['sentences']} texts)")


if __name__ == "__main__":
    main()
