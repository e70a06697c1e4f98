"""Anomaly scoring benchmark (issue 6): runs pipelines/anomaly.py, prints a table, and writes
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
    sms, trec = result["sms"], result["trec"]
    scorers = list(sms["scorers"])
    print(f"\n{'AUROC':16s} " + " ".join(f"{s:>11s}" for s in scorers) + f" {'tfidf+knn':>10s} {'length':>8s}")
    print(f"{'SMS':16s} " + " ".join(f"{sms['scorers'][s]:11.3f}" for s in scorers)
          + f" {sms['tfidf_knn']:10.3f} {sms['length_tokens']:8.3f}")
    print(f"{'TREC mean':16s} " + " ".join(f"{trec['scorers_mean'][s]:11.3f}" for s in scorers)
          + f" {trec['tfidf_knn_mean']:10.3f} {trec['length_tokens_mean']:8.3f}")
    for name, run in result["throughput"]["runs"].items():
        print(f"score {int(name):>9,} rows: {run['rows_per_s']:8,.0f} rows/s, peak RSS {run['peak_rss_mb']:6,.0f} MB")
    print(f"default scorer: {result['default_scorer']}; targets: SMS >= 0.95, TREC mean >= 0.95")


if __name__ == "__main__":
    main()
