"""Unsupervised summarisation benchmark (issue 5): runs pipelines/summarization.py, prints a table,
and writes benchmarks/results/summarization.json.

    python benchmarks/summarization.py [--workdir runs/bench-summarization] [pipeline options ...]

The pipeline's stages are skipped when up to date, so a re-run only re-reports; pass --force to
retrain. Training reads news article sentences only; titles are the evaluation's references.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from benchmarks.common import device_name  # noqa: E402

RESULTS = Path(__file__).parent / "results" / "summarization.json"


def main() -> None:
    args = sys.argv[1:]
    if "--workdir" not in args:
        args = ["--workdir", "runs/bench-summarization", *args]
    subprocess.run([sys.executable, "-m", "pipelines.summarization", *args, "--results", str(RESULTS)], check=True)
    result = json.loads(RESULTS.read_text())
    result["device"] = device_name("cpu") + " (training on the default accelerate device, evaluation on CPU)"
    result["command"] = " ".join(["python", "benchmarks/summarization.py", *sys.argv[1:]])
    RESULTS.write_text(json.dumps(result, indent=1, ensure_ascii=False) + "\n")
    rows = [("textae text family", result), ("  without the phrase cost", result["no_fluency"]),
            ("  + LM surprise at breaks", result["with_lm"]), ("  LM surprise, no phrase cost", result["lm_only"]),
            ("no discriminator", result["no_discriminator"]),
            ("LM prior, no discriminator", result["prior_instead_of_discriminator"]),
            ("salience only (pre-train)", result["salience_only"]),
            ("Lead-8", result["lead8"]),
            ("Lead-10", result["lead10"])]
    print(f"\n{'system':32s} {'R-1':>6s} {'R-2':>6s} {'R-L':>6s} {'words':>6s} {'bigrams%':>8s} {'LM NLL':>7s}")
    for name, r in rows:
        print(f"{name:32s} {r['rouge1']:6.2f} {r['rouge2']:6.2f} {r['rougeL']:6.2f} {r['avg_words']:6.1f} "
              f"{r['attested_bigrams']:8.1f} {r['readability']:7.2f}")
    print(f"{'titles':32s} {'':>6s} {'':>6s} {'':>6s} {'':>6s} {result['titles_attested_bigrams']:8.1f} "
          f"{result['readability_titles']:7.2f}")
    print("\nphrase weight sweep: " + "; ".join(f"{r['phrase_weight']:g}: R-1 {r['rouge1']:.2f}, bigrams "
                                              f"{r['attested_bigrams']:.1f} %" for r in result["phrase_sweep"]))
    for e in result["examples"][:8]:
        print(f"\n  source:  {e['source']}\n  summary: {e['summary']}\n  keywords: {e['no_fluency']}\n  title:   {e['title']}")
    print(f"\ntarget R-1 (Lead-8 + 7): {result['target_rouge1']:.2f}; summaries/s: {result['sentences_per_s']:.0f} "
          f"(with the LM: {result['with_lm']['sentences_per_s']:.0f})")
    t = result["teacher_sample"]
    print(f"on {t['pairs']} random pairs: the sentence encoder's own choice R-1 {t['teacher']['rouge1']:.2f}, "
          f"the compressor {t['train']['rouge1']:.2f}, Lead-8 {t['lead8']['rouge1']:.2f}")


if __name__ == "__main__":
    main()
