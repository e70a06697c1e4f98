"""Dev protocol for the cae's default label weight (`textae transfer --label-weight`, issue 24 target 3).

The default must not be read off the benchmark's held-out rows, so this uses none of them. For SMS and
TREC it takes the *training* rows of the benchmark's cae runs (runs/bench-conditional/cae-*, which
`make bench-conditional` trains) and splits them again (15 % dev, seed 0). A cae trained on the rest
with the benchmark's own arguments rewrites the dev rows at each label weight of WEIGHTS; the label
judge, MiniLM similarity and the evaluation LM are the benchmark's, fitted on the rest too.

The rule, fixed before the figures were read: the smallest weight at which, on every set, the judge's
accuracy is at least 0.7 (on a two-label set, in each direction), similarity at least 0.5 and the NLL
ratio at most 1.15; if none, the weight whose worst such accuracy is highest.
Writes benchmarks/results/label_weight_dev.json (every row's figures, the rule's choice).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from common import device_name, train_run
from conditional import DATASETS, STEPS, Judges, eval_lm, random_targets, splits, weight_rows

RESULTS = Path(__file__).parent / "results"
BENCH_RUNS = Path("runs/bench-conditional")  # whose cae runs' training rows are split again
WEIGHTS = (1.0, 2.0, 3.0, 4.0, 6.0, 8.0)


def worst_accuracy(row: dict) -> float:
    """The accuracy the rule reads: each direction's on a two-label set (the lower is below the overall), else the overall."""
    by_target = list(row["accuracy_by_target"].values())
    return min(by_target) if len(by_target) == 2 else row["accuracy"]


def choose(sets: dict[str, list[dict]]) -> float:
    """The rule of the module docstring, over rows of {label_weight, accuracy, ...} per set."""
    def at(w: float) -> list[dict]:
        return [next(r for r in rows if r["label_weight"] == w) for rows in sets.values()]

    met = [w for w in WEIGHTS
           if all(worst_accuracy(r) >= 0.7 and r["similarity"] >= 0.5 and r["nll_ratio"] <= 1.15 for r in at(w))]
    return met[0] if met else max(WEIGHTS, key=lambda w: min(worst_accuracy(r) for r in at(w)))


def dev_figures(root: Path, dataset: str, init: str, encoder, limit: int, fresh: bool) -> dict:
    """One set: its dev cae trained (or reused), then its dev rows rewritten at every weight of WEIGHTS."""
    import textae

    _, label, data = DATASETS[dataset]
    train_rows, _ = splits(BENCH_RUNS / f"cae-{dataset}", label, None)
    root.mkdir(parents=True, exist_ok=True)
    rows_file = root / f"{dataset}-train.jsonl"
    with rows_file.open("w") as f:
        for text, y in zip(train_rows["texts"], train_rows["labels"]):
            f.write(json.dumps({"text": text, label: y}) + "\n")
    args = ["--data", str(rows_file), "--family", "cae", "--max-steps", str(STEPS), "--init-from", init,
            "--set", "train.eval_every=600", *data, "--set", "data.validation_size=0.15",  # the dev share
            "--set", f"model.bottleneck={{label_column: {label}}}"]
    command, minutes = train_run(root, f"cae-{dataset}", args, fresh)
    run = root / f"cae-{dataset}"
    lm = eval_lm(root, dataset, run, 3.0)
    rest, dev = splits(run, label, limit)
    judges = Judges(rest, dev, encoder, lm)
    ae = textae.load(run / "final")
    rows = weight_rows(ae, judges, dev["texts"], random_targets(ae.model.bottleneck.cfg.labels, dev["labels"]), WEIGHTS,
                       examples=10)
    return {"train_command": " ".join(command), "train_minutes": minutes, "dev_rows": len(dev["texts"]),
            "rest_rows": len(rest["texts"]), "rows": rows}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", type=Path, default=Path("runs/bench-label-weight"))
    parser.add_argument("--init-from", default="runs/bench-default/final", help="the foundation AE every run starts from")
    parser.add_argument("--dev-rows", type=int, default=500, help="dev rows rewritten per set, at most")
    parser.add_argument("--fresh", action="store_true", help="retrain the dev caes (else finished runs of the same command are reused)")
    args = parser.parse_args()
    missing = [str(BENCH_RUNS / f"cae-{d}") for d in ("sms", "trec") if not (BENCH_RUNS / f"cae-{d}" / "config.yaml").is_file()]
    if missing:
        print(f"error: {', '.join(missing)} missing; run `make bench-conditional` first (its training split is the source)",
              file=sys.stderr)
        sys.exit(2)
    from textae.similarity import SentenceEncoder

    encoder = SentenceEncoder()
    sets = {d: dev_figures(args.root, d, args.init_from, encoder, args.dev_rows, args.fresh) for d in ("sms", "trec")}
    chosen = choose({d: s["rows"] for d, s in sets.items()})
    result = {"sets": sets, "chosen_label_weight": chosen, "weights": list(WEIGHTS), "device": device_name(),
              "command": " ".join(["python", *sys.argv])}
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "label_weight_dev.json").write_text(json.dumps(result, indent=2) + "\n")
    print("\nlabel weight: " + "  ".join(f"{w:g}" for w in WEIGHTS))
    for d, s in sets.items():
        print(f"  {d}: " + "  ".join(f"{r['accuracy']:.3f}/{r['similarity']:.3f}/{r['nll_ratio']:.2f}" for r in s["rows"]))
    for d, s in sets.items():
        for e in next(r for r in s["rows"] if r["label_weight"] == chosen)["examples"]:
            print(f"  [{d} -> {e['to']}] {e['source']}\n      => {e['transferred']}")
    print(f"chosen (accuracy >= 0.7 each direction, similarity >= 0.5, NLL ratio <= 1.15; else the best worst case): {chosen:g}")


if __name__ == "__main__":
    main()
