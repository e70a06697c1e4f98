"""Anomaly scoring benchmark (issues 6, 23): runs pipelines/anomaly.py, prints a table, and writes
benchmarks/results/anomaly.json.

    python benchmarks/anomaly.py [--workdir runs/bench-anomaly] [pipeline options ...]

The pipeline's stages are skipped when up to date, so a re-run only re-reports; pass --force to
retrain. Labels only make the splits and compute AUROC; every model trains on normal texts alone.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

RESULTS = Path(__file__).parent / "results" / "anomaly.json"


def main() -> None:
    args = sys.argv[1:]
    if "--workdir" not in args:
        args = ["--workdir", "runs/bench-anomaly", *args]
    subprocess.run([sys.executable, "-m", "pipelines.anomaly", *args, "--results", str(RESULTS)], check=True)
    result = json.loads(RESULTS.read_text())
    result["command"] = " ".join(["python", "benchmarks/anomaly.py", *sys.argv[1:]])
    RESULTS.write_text(json.dumps(result, indent=1) + "\n")
    scorers = list(result["mean_scorers"])
    peers = ["tfidf_knn", "minilm_knn", "length_tokens"]
    print(f"\n{'AUROC':16s} " + " ".join(f"{s[:11]:>11s}" for s in scorers + peers) + f" {'best peer':>14s} {'margin':>7s}")
    for name, row in result["sets"].items():
        print(f"{name:16s} " + " ".join(f"{row['scorers'][s]:11.3f}" for s in scorers)
              + " " + " ".join(f"{row[p]:11.3f}" for p in peers)
              + f" {row['best_peer_name']:>14s} {row['margin']:+7.3f}")
    print(f"mean: default ({result['default_scorer']}) {result['mean_default']:.3f}, best peers {result['mean_best_peer']:.3f}; "
          f"default >= best peer on {result['default_beats_best_peer_on']} of {len(result['sets'])} sets")
    for run in [*result["throughput"]["runs"].values(), result["throughput"]["fast_ensemble"]]:
        print(f"score {run['rows']:>9,} rows ({run['scorer']}): {run['rows_per_s']:8,.0f} rows/s, peak RSS {run['peak_rss_mb']:6,.0f} MB")
    print("target (issue 23): default >= best peer on every set, mean >= best peers' + 0.03, >= 500 rows/s, RSS < 2 GB: "
          + ("met" if result["target_met"] else "not met"))


if __name__ == "__main__":
    main()
