"""Pipeline: anomaly scoring with autoencoders, evaluated with GUIDE's SMS and TREC protocols.

    python -m pipelines.anomaly [--workdir runs/anomaly] [--minutes 2] [--pretrain-minutes 0]
        [--throughput-rows 100000,1000000] [--results FILE]

Stages (each skipped when its outputs are newer than its inputs and its parameters unchanged;
a killed training stage resumes from its last checkpoint):
  prepare      → WORKDIR/splits/NAME.json       fit / test texts of SMS and of each TREC class
  general      → WORKDIR/general/final/         only with --pretrain-minutes > 0: a plain AE on the
                                                built-in news sentences that every model starts from
  train_NAME   → WORKDIR/NAME/final/            a model trained on NAME's normal texts only
  throughput   → WORKDIR/throughput.json        `textae score` over generated 100k / 1M-line files:
                                                rows/s and peak RSS of each
  evaluate     → WORKDIR/eval.json              AUROC of every scorer, TF-IDF + kNN and length alone
  report       → WORKDIR/report.md, WORKDIR/anomaly.json, WORKDIR/roc_sms.png (and --results)
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import click
import numpy as np

from benchmarks.common import device_name  # figures record the device they were measured on
from textae import load_config
from textae.cli import configure_logging
from textae.config import parse_overrides
from textae.errors import TextAEError
from textae.scoring import DEFAULT_SCORER, SCORERS, AnomalyDetector
from textae.scoring.protocols import (TREC_CLASSES, Split, auroc, cross_domain, length_scores, sms_split,
                                     tfidf_knn_scores, trec_splits)

from .autoencoder import _train_stage
from .stages import Stage, run_pipeline

# evaluation set → the split whose normal texts train its model (cross-domain sets reuse a model)
CROSS_DOMAIN = {"sms_vs_news": "sms"}


def _prepare(out: Path) -> None:
    from textae.data import SENTENCE_MAX_WORDS, SENTENCE_MIN_WORDS, DataConfig, prepare

    out.mkdir(parents=True, exist_ok=True)
    sms = sms_split()
    # held-out news sentences
    news = prepare(DataConfig(min_words=SENTENCE_MIN_WORDS, max_words=SENTENCE_MAX_WORDS))["validation"]["text"]
    for split in [sms, *trec_splits(), sms_split(distinct=False), *trec_splits(distinct=False),
                  cross_domain(sms, news, "sms_vs_news")]:
        (out / f"{split.name}.json").write_text(json.dumps(split.__dict__, ensure_ascii=False))
        with open(out / f"{split.name}.fit.jsonl", "w", encoding="utf-8") as f:
            f.writelines(json.dumps({"text": t}, ensure_ascii=False) + "\n" for t in split.fit)


def _load_split(path: Path) -> Split:
    return Split(**json.loads(path.read_text()))


def split_config(work: Path, name: str, minutes: float | None, steps: int | None, overrides: dict,
                 init_from: Path | None = None):
    """The training run of one split's model: its normal texts only, whole messages, own tokenizer
    (or `init_from`'s), for `steps` optimiser steps or else `minutes`."""
    return load_config(None, {
        **overrides, "data.source": str(work / "splits" / f"{name}.fit.jsonl"), "data.split_sentences": False,
        "data.min_words": 1, "data.max_words": None, "train.output_dir": str(work / name),
        "train.max_minutes": None if steps else minutes, "train.max_steps": steps or 10**6,
        "train.eval_every": 10**6, "train.save_every": 200,
        **({"train.init_from": str(init_from), "train.warmup_steps": 20} if init_from else {})})


def _evaluate(splits: dict[str, Path], finals: dict[str, Path], out: Path) -> None:
    from textae import load

    result: dict = {}
    for name, path in splits.items():
        split = _load_split(path)
        ae = load(finals[CROSS_DOMAIN.get(name, name)])
        row = {"fit": len(split.fit), "test": len(split.test), "anomalies": int(sum(split.labels))}
        raw = {"labels": split.labels}
        probe = AnomalyDetector(ae, "nll")
        fit, test = probe.features(split.fit), probe.features(split.test)  # one model pass serves every scorer
        for scorer in SCORERS:
            if scorer == "elbo" and not ae.model.bottleneck.standard_normal_prior:
                continue
            raw[scorer] = AnomalyDetector(ae, scorer).fit_features(fit).scores(test).tolist()
        raw["tfidf_knn"] = tfidf_knn_scores(split.fit, split.test).tolist()
        for unit, tok in (("tokens", ae.tokenizer), ("words", None)):
            raw[f"length_{unit}"] = length_scores(split.test, tok).tolist()
        for key, scores in raw.items():
            if key != "labels":
                a = auroc(split.labels, np.asarray(scores))
                row[key] = max(a, 1 - a) if key.startswith("length") and "trec" in name else a  # best sign, as GUIDE
        result[name] = row
        (out.parent / "scores").mkdir(exist_ok=True)
        (out.parent / "scores" / f"{name}.json").write_text(json.dumps(raw))
        click.echo(f"{name}: " + ", ".join(f"{k} {v:.3f}" for k, v in row.items() if isinstance(v, float)))
    out.write_text(json.dumps(result, indent=2) + "\n")


def _lines(n: int, seed: int = 0) -> list[str]:
    """Realistic rows for the throughput test: SMS and TREC texts drawn with replacement."""
    split = sms_split()
    pool = split.fit + split.test + [t for s in trec_splits() for t in s.test]
    rng = np.random.default_rng(seed)
    return [pool[i] for i in rng.integers(0, len(pool), size=n)]


def _throughput(final: Path, sizes: list[int], work: Path, out: Path) -> None:
    """Run `textae score` on generated files of each size; time it and read its peak RSS from wait4."""
    result = {}
    for n in sizes:
        data = work / f"throughput_{n}.jsonl.gz"
        if not data.is_file():
            import gzip

            with gzip.open(data, "wt", encoding="utf-8") as f:
                for i, text in enumerate(_lines(n)):
                    f.write(json.dumps({"id": f"row{i}", "text": text}) + "\n")
        scores = work / f"throughput_{n}.scores.jsonl"
        for stale in work.glob(f"throughput_{n}.scores.jsonl*"):
            stale.unlink()
        cmd = [sys.executable, "-m", "textae", "score", "--model", str(final), "--input", str(data),
               "--output", str(scores), "--no-progress"]
        start = time.perf_counter()
        proc = subprocess.Popen(cmd)
        _, status, usage = os.wait4(proc.pid, 0)
        seconds = time.perf_counter() - start
        if status != 0:
            raise TextAEError(f"textae score failed on {data} (status {status})")
        result[str(n)] = {"rows": n, "seconds": round(seconds, 1), "rows_per_s": round(n / seconds, 1),
                          "peak_rss_mb": round(usage.ru_maxrss / 1024, 1), "command": " ".join(cmd[1:])}
        click.echo(f"throughput {n} rows: {n / seconds:.0f} rows/s, peak RSS {usage.ru_maxrss / 1024:.0f} MB")
        scores.unlink()
    out.write_text(json.dumps(result, indent=2) + "\n")


def _roc_plot(splits: dict[str, Path], final: Path, png: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.metrics import roc_curve

    from textae import load

    split = _load_split(splits["sms"])
    ae = load(final)
    curves = {f"textae ({s})": AnomalyDetector(ae, s).fit(split.fit).decision_function(split.test)
              for s in dict.fromkeys([DEFAULT_SCORER, "nll", "mahalanobis"])}
    curves |= {
              "TF-IDF + kNN": tfidf_knn_scores(split.fit, split.test),
              "length (tokens)": length_scores(split.test, ae.tokenizer)}
    fig, ax = plt.subplots(figsize=(5, 5))
    for label, scores in curves.items():
        fpr, tpr, _ = roc_curve(split.labels, scores)
        ax.plot(fpr, tpr, label=f"{label}: AUROC {auroc(split.labels, scores):.3f}")
    ax.plot([0, 1], [0, 1], ":", color="grey")
    ax.set(xlabel="false positive rate (ham flagged)", ylabel="true positive rate (spam flagged)",
           title="SMS spam as anomalies (fit on ham only)")
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(png, dpi=120)
    plt.close(fig)


def _protocol(ev: dict, prefix: str, scorers: list[str]) -> dict:
    """One protocol's figures in the issue's layout (keys sms, trec)."""
    sms = ev[f"{prefix}sms"]
    trec = {c: ev[f"{prefix}trec_{c}"] for c in TREC_CLASSES if f"{prefix}trec_{c}" in ev}
    mean = lambda key: float(np.mean([v[key] for v in trec.values()]))
    return {
        "sms": {"textae": sms[DEFAULT_SCORER], "tfidf_knn": sms["tfidf_knn"], "length_tokens": sms["length_tokens"],
                "scorers": {s: sms[s] for s in scorers}},
        "trec": {"per_class": {c: v[DEFAULT_SCORER] for c, v in trec.items()}, "mean": mean(DEFAULT_SCORER),
                 "tfidf_knn_mean": mean("tfidf_knn"), "length_tokens_mean": mean("length_tokens"),
                 "scorers_mean": {s: mean(s) for s in scorers},
                 "tfidf_knn_per_class": {c: v["tfidf_knn"] for c, v in trec.items()}},
    }


def _report(eval_json: Path, throughput_json: Path, splits: dict[str, Path], finals: dict[str, Path], work: Path,
            command: str, results: Path | None) -> None:
    ev = json.loads(eval_json.read_text())
    tp = json.loads(throughput_json.read_text())
    scorers = [s for s in SCORERS if s in ev["sms"]]
    sizes = sorted(tp, key=int)
    ours = _protocol(ev, "", scorers)
    # the best scorer on the deduplicated protocol, SMS and TREC weighing the same
    best = max(scorers, key=lambda s: ours["sms"]["scorers"][s] + ours["trec"]["scorers_mean"][s])
    figures = {
        **ours,
        "best_scorer": best,
        "guide_protocol": _protocol(ev, "guide_", scorers) if "guide_sms" in ev else None,
        "cross_domain": {n: {s: ev[n][s] for s in [*scorers, "tfidf_knn", "length_tokens"]} for n in CROSS_DOMAIN if n in ev},
        "throughput": {"rows_per_s": tp[sizes[-1]]["rows_per_s"], f"rows_per_s_{sizes[0]}": tp[sizes[0]]["rows_per_s"],
                       "peak_rss_mb_100k": tp.get("100000", {}).get("peak_rss_mb"),
                       "peak_rss_mb_1m": tp.get("1000000", {}).get("peak_rss_mb"), "runs": tp},
        "default_scorer": DEFAULT_SCORER,
        "protocol": "sms/trec: deduplicated texts (no text both fitted and tested); guide_protocol: GUIDE as written",
        "device": device_name(),
        "command": command,
    }
    (work / "anomaly.json").write_text(json.dumps(figures, indent=2) + "\n")
    if results:
        Path(results).parent.mkdir(parents=True, exist_ok=True)
        Path(results).write_text(json.dumps(figures, indent=2) + "\n")
    _roc_plot(splits, finals["sms"], work / "roc_sms.png")
    head = "| set | " + " | ".join(scorers) + " | TF-IDF + kNN | length (tokens) |"
    verdict = (f"Best scorer (mean of SMS and TREC, deduplicated): **{best}**"
               + ("" if best == DEFAULT_SCORER else f"; the library default is still {DEFAULT_SCORER}: update it") + ".\n")
    lines = [f"# Anomaly scoring report\n\n`{command}`\n", verdict, "AUROC (higher = better):\n", head,
             "|" + "---|" * (len(scorers) + 3)]
    row = lambda name, r: (f"| {name} | " + " | ".join(f"{r[s]:.3f}" for s in scorers)
                           + f" | {r['tfidf_knn']:.3f} | {r['length_tokens']:.3f} |")
    for prefix in ("", "guide_"):
        names = [n for n in ev if n.startswith(prefix + "trec_") or n == prefix + "sms"]
        for name in names:
            lines.append(row(name, ev[name]))
        trec = [ev[n] for n in names if "trec" in n]
        if trec:
            lines.append(row(f"{prefix}TREC mean", {k: float(np.mean([r[k] for r in trec])) for k in trec[0]}))
    lines += [row(n, ev[n]) for n in CROSS_DOMAIN if n in ev]
    lines += ["", "| rows | rows/s | peak RSS (MB) |", "|---|---|---|"]
    lines += [f"| {int(n):,} | {tp[n]['rows_per_s']:,.0f} | {tp[n]['peak_rss_mb']:,.0f} |" for n in sizes]
    lines += ["", "![ROC](roc_sms.png)"]
    (work / "report.md").write_text("\n".join(lines) + "\n")


@click.command()
@click.option("--workdir", type=click.Path(file_okay=False), default="runs/anomaly", help="Where every stage writes.")
@click.option("--pretrain-minutes", type=float, default=0.0,
              help="Train a general news AE this long first and fine-tune every model from it (0 = each model from scratch, with its own tokenizer).")
@click.option("--minutes", type=float, default=2.0, help="Training time of each split's model.")
@click.option("--steps", type=int, default=None, help="Train each split's model for this many steps instead (e.g. on a GPU).")
@click.option("--throughput-rows", default="100000,1000000", help="Sizes of the generated files to score (comma-separated).")
@click.option("--only", default=None, help="Comma-separated split names to run (e.g. sms); default: all. For quick checks.")
@click.option("--set", "sets", multiple=True, metavar="SECTION.KEY=VALUE", help="Override a training config value (repeatable).")
@click.option("--results", type=click.Path(dir_okay=False), default=None, help="Also write anomaly.json here.")
@click.option("--force", is_flag=True, help="Re-run every stage, retraining from scratch.")
def main(workdir, pretrain_minutes, minutes, steps, throughput_rows, only, sets, results, force) -> None:
    """prepare → train_* → throughput → evaluate → report, skipping stages that are up to date."""
    configure_logging()
    work = Path(workdir)
    work.mkdir(parents=True, exist_ok=True)
    command = "python -m pipelines.anomaly " + " ".join(sys.argv[1:])

    def build() -> list[Stage]:
        overrides = parse_overrides(sets)
        sizes = [int(x) for x in throughput_rows.split(",") if x.strip()]
        names = [f"{p}{n}" for p in ("", "guide_") for n in ("sms", *(f"trec_{c}" for c in TREC_CLASSES))]
        if only:
            names = [n for n in names if n in only.split(",")] or names
        evaluated = names + [n for n, model in CROSS_DOMAIN.items() if model in names]
        splits = {n: work / "splits" / f"{n}.json" for n in evaluated}
        general = load_config(None, {**overrides, "train.output_dir": str(work / "general"),
                                     "train.max_minutes": pretrain_minutes, "train.max_steps": 10**6})
        base = work / "general/final"
        stages = [Stage("prepare", lambda: _prepare(work / "splits"), list(splits.values()))]
        if pretrain_minutes > 0:
            stages.append(Stage("general", lambda: _train_stage(general, work / "general", force),
                                [base / "model.safetensors"], params=general.to_dict()))
        finals = {}
        for name in names:
            cfg = split_config(work, name, minutes, steps, overrides, base if pretrain_minutes > 0 else None)
            finals[name] = work / name / "final"
            stages.append(Stage(f"train_{name}", lambda cfg=cfg, name=name: _train_stage(cfg, work / name, force),
                                [finals[name] / "model.safetensors"], [splits[name]] + ([base / "model.safetensors"] if pretrain_minutes > 0 else []),
                                params=cfg.to_dict()))
        weights = [f / "model.safetensors" for f in finals.values()]
        stages += [
            Stage("throughput", lambda: _throughput(finals[names[0]], sizes, work, work / "throughput.json"),
                  [work / "throughput.json"], [finals[names[0]] / "model.safetensors"], params={"sizes": sizes}),
            Stage("evaluate", lambda: _evaluate(splits, finals, work / "eval.json"), [work / "eval.json"], weights,
                  params={"scorers": SCORERS}),
            Stage("report", lambda: _report(work / "eval.json", work / "throughput.json", splits, finals, work, command,
                                            Path(results) if results else None),
                  [work / "report.md", work / "anomaly.json"], [work / "eval.json", work / "throughput.json"],
                  params={"results": results, "default": DEFAULT_SCORER}),
        ]
        return stages

    run_pipeline(build, work / "report.md", force)


if __name__ == "__main__":
    main()
