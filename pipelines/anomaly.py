"""Pipeline: anomaly scoring with autoencoders, on GUIDE's SMS and TREC protocols (deduplicated),
two length-matched sets of the sentiment snippets (movie reviews vs product reviews, editorials
vs tweets) and a cross-domain check, each against TF-IDF + kNN, MiniLM + kNN and length alone.

    python -m pipelines.anomaly [--workdir runs/anomaly] [--minutes 2] [--pretrain-minutes 0]
        [--throughput-rows 100000,1000000] [--guide] [--results FILE]

Stages (each skipped when its outputs are newer than its inputs and its parameters unchanged;
a killed training stage resumes from its last checkpoint):
  prepare      → WORKDIR/splits/NAME.json       fit / test texts of every set
  general      → WORKDIR/general/final/         only with --pretrain-minutes > 0: a plain AE on the
                                                built-in news sentences that every model starts from
  train_NAME   → WORKDIR/NAME/final/            a model trained on NAME's normal texts only
  throughput   → WORKDIR/throughput.json        the default detector fitted on SMS, then `textae score`
                                                over generated 100k / 1M-line files: rows/s, peak RSS
  evaluate     → WORKDIR/eval.json              AUROC of every scorer and of the peers, with examples
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
from textae.scoring.detector import ENSEMBLES, TAIL_MIN, TAIL_SHARE
from textae.scoring.protocols import (SNIPPET_SETS, TREC_CLASSES, Split, auroc, cross_domain, length_scores,
                                     minilm_knn_scores, sms_split, snippet_split, tfidf_knn_scores, trec_splits)

from .autoencoder import _train_stage
from .stages import Stage, run_pipeline

# evaluation set → the split whose normal texts train its model (cross-domain sets reuse a model)
CROSS_DOMAIN = {"sms_vs_news": "sms"}
PEERS = ("tfidf_knn", "minilm_knn", "length_tokens")
FAST_ROWS = 100_000  # rows the fast_ensemble's throughput is measured on, beside the default's


def _prepare(out: Path) -> None:
    from textae.data import SENTENCE_MAX_WORDS, SENTENCE_MIN_WORDS, DataConfig, prepare

    out.mkdir(parents=True, exist_ok=True)
    sms = sms_split()
    # held-out news sentences
    news = prepare(DataConfig(min_words=SENTENCE_MIN_WORDS, max_words=SENTENCE_MAX_WORDS))["validation"]["text"]
    for split in [sms, *trec_splits(), *(snippet_split(name) for name in SNIPPET_SETS), sms_split(distinct=False),
                  *trec_splits(distinct=False), cross_domain(sms, news, "sms_vs_news")]:
        _write_if_changed(out / f"{split.name}.json", json.dumps(split.__dict__, ensure_ascii=False))
        _write_if_changed(out / f"{split.name}.fit.jsonl",
                          "".join(json.dumps({"text": t}, ensure_ascii=False) + "\n" for t in split.fit))


def _write_if_changed(path: Path, text: str) -> None:
    """Rewriting an unchanged split would make every model trained on it look stale."""
    if not path.is_file() or path.read_text(encoding="utf-8") != text:
        path.write_text(text, encoding="utf-8")


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
    from textae.similarity import SentenceEncoder

    encoder = SentenceEncoder()
    result: dict = {}
    for name, path in splits.items():
        split = _load_split(path)
        ae = load(finals[CROSS_DOMAIN.get(name, name)])
        row = {"fit": len(split.fit), "test": len(split.test), "anomalies": int(sum(split.labels))}
        raw = {"labels": split.labels}
        probe = AnomalyDetector(ae, "ensemble")
        fit, test = probe.features(split.fit), probe.features(split.test)  # one pass (model and encoder) serves every scorer
        for scorer in SCORERS:
            if scorer == "elbo" and not ae.model.bottleneck.standard_normal_prior:
                continue
            raw[scorer] = AnomalyDetector(ae, scorer).fit_features(fit).scores(test).tolist()
        raw["tfidf_knn"] = tfidf_knn_scores(split.fit, split.test).tolist()
        raw["minilm_knn"] = minilm_knn_scores(split.fit, split.test, encoder).tolist()
        for unit, tok in (("tokens", ae.tokenizer), ("words", None)):
            raw[f"length_{unit}"] = length_scores(split.test, tok).tolist()
        for key, scores in raw.items():
            if key != "labels":
                a = auroc(split.labels, np.asarray(scores))
                row[key] = max(a, 1 - a) if key.startswith("length") else a  # length: the better sign, as GUIDE
        row["examples"] = _examples(split, np.asarray(raw[DEFAULT_SCORER]))
        result[name] = row
        (out.parent / "scores").mkdir(exist_ok=True)
        (out.parent / "scores" / f"{name}.json").write_text(json.dumps(raw))
        click.echo(f"{name}: " + ", ".join(f"{k} {v:.3f}" for k, v in row.items() if isinstance(v, float)))
    out.write_text(json.dumps(result, indent=2) + "\n")


def _examples(split: Split, scores: np.ndarray, n: int = 4) -> dict[str, list]:
    """What a user sees: the texts the default detector finds most unusual (with their true label),
    and the normal texts it finds most unusual (its false alarms)."""
    order = np.argsort(-scores)
    normal = [i for i in order if split.labels[i] == 0]
    pick = lambda rows: [{"text": split.test[i], "score": round(float(scores[i]), 2), "anomaly": bool(split.labels[i])}
                         for i in rows[:n]]
    return {"most_unusual": pick(list(order)), "normal_scored_highest": pick(normal)}


def _lines(n: int, seed: int = 0) -> list[str]:
    """Realistic rows for the throughput test: SMS and TREC texts drawn with replacement."""
    split = sms_split()
    pool = split.fit + split.test + [t for s in trec_splits() for t in s.test]
    rng = np.random.default_rng(seed)
    return [pool[i] for i in rng.integers(0, len(pool), size=n)]


def _throughput(final: Path, fit: Path, sizes: list[int], work: Path, out: Path, scorer: str = DEFAULT_SCORER) -> None:
    """Fit a `scorer` detector on `fit` (normal texts), then run `textae score` on generated files of
    each size; time the scoring and read its peak RSS from wait4."""
    fitted = subprocess.run([sys.executable, "-m", "textae", "fit-detector", "--model", str(final), "--input", str(fit),
                             "--scorer", scorer, "--overwrite"])
    if fitted.returncode != 0:
        raise TextAEError(f"textae fit-detector failed on {fit} (status {fitted.returncode})")
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
                          "peak_rss_mb": round(usage.ru_maxrss / 1024, 1), "scorer": scorer,
                          "command": " ".join(cmd[1:])}
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
              for s in dict.fromkeys([DEFAULT_SCORER, "nll_char", "semantic"])}
    curves |= {"TF-IDF + kNN": tfidf_knn_scores(split.fit, split.test),
               "MiniLM + kNN": minilm_knn_scores(split.fit, split.test),
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
    """One protocol's SMS and TREC figures (keys sms, trec)."""
    sms = ev[f"{prefix}sms"]
    trec = {c: ev[f"{prefix}trec_{c}"] for c in TREC_CLASSES if f"{prefix}trec_{c}" in ev}
    mean = lambda key: float(np.mean([v[key] for v in trec.values()]))
    return {
        "sms": {"textae": sms[DEFAULT_SCORER], **{p: sms[p] for p in PEERS}, "scorers": {s: sms[s] for s in scorers}},
        "trec": {"per_class": {c: v[DEFAULT_SCORER] for c, v in trec.items()}, "mean": mean(DEFAULT_SCORER),
                 **{f"{p}_mean": mean(p) for p in PEERS}, "scorers_mean": {s: mean(s) for s in scorers},
                 **{f"{p}_per_class": {c: v[p] for c, v in trec.items()} for p in ("tfidf_knn", "minilm_knn")}},
    }


def _set_figures(row: dict, scorers: list[str]) -> dict:
    """One evaluation set: the default detector, every scorer, the peers and the best of them."""
    best = max(PEERS, key=lambda p: row[p])
    return {"default": row[DEFAULT_SCORER], **{p: row[p] for p in PEERS}, "length_words": row["length_words"],
            "best_peer": row[best], "best_peer_name": best, "margin": row[DEFAULT_SCORER] - row[best],
            "scorers": {s: row[s] for s in scorers}, "fit": row["fit"], "test": row["test"], "anomalies": row["anomalies"],
            "examples": row["examples"]}


def _report(eval_json: Path, throughput_json: Path, splits: dict[str, Path], finals: dict[str, Path], work: Path,
            command: str, results: Path | None) -> None:
    ev = json.loads(eval_json.read_text())
    tp = json.loads(throughput_json.read_text())
    fast = json.loads((work / "throughput_fast.json").read_text())[str(FAST_ROWS)]
    scorers = [s for s in SCORERS if s in ev["sms"]]
    sizes = sorted(tp, key=int)
    sets = {name: _set_figures(row, scorers) for name, row in ev.items() if not name.startswith("guide_")}
    mean_default = float(np.mean([r["default"] for r in sets.values()]))
    mean_best_peer = float(np.mean([r["best_peer"] for r in sets.values()]))
    # the best scorer over every set, each weighing the same
    best = max(scorers, key=lambda s: np.mean([r["scorers"][s] for r in sets.values()]))
    largest = tp[sizes[-1]]
    figures = {
        "sets": sets,
        "mean_default": mean_default,
        "mean_best_peer": mean_best_peer,
        "mean_scorers": {s: float(np.mean([r["scorers"][s] for r in sets.values()])) for s in scorers},
        "default_beats_best_peer_on": sum(r["margin"] >= 0 for r in sets.values()),
        "target_met": all(r["margin"] >= 0 for r in sets.values()) and mean_default >= mean_best_peer + 0.03
                      and largest["rows_per_s"] >= 500 and largest["peak_rss_mb"] < 2048,
        **_protocol(ev, "", scorers),
        "best_scorer": best,
        "guide_protocol": _protocol(ev, "guide_", scorers) if "guide_sms" in ev else None,
        "cross_domain": {n: {s: ev[n][s] for s in [*scorers, *PEERS]} for n in CROSS_DOMAIN if n in ev},
        "throughput": {"scorer": DEFAULT_SCORER, "rows_per_s": largest["rows_per_s"],
                       f"rows_per_s_{sizes[0]}": tp[sizes[0]]["rows_per_s"],
                       "peak_rss_mb_100k": tp.get("100000", {}).get("peak_rss_mb"),
                       "peak_rss_mb_1m": tp.get("1000000", {}).get("peak_rss_mb"), "runs": tp,
                       "fast_ensemble": fast},
        "default_scorer": DEFAULT_SCORER,
        "protocol": ("deduplicated texts (no text both fitted and tested); snippet sets length-matched (see "
                     "textae.scoring.protocols.snippet_split); length peers take their better sign; "
                     "guide_protocol: GUIDE as written"),
        "device": device_name(),
        "command": command,
    }
    (work / "anomaly.json").write_text(json.dumps(figures, indent=2) + "\n")
    if results:
        Path(results).parent.mkdir(parents=True, exist_ok=True)
        Path(results).write_text(json.dumps(figures, indent=2) + "\n")
    _roc_plot(splits, finals["sms"], work / "roc_sms.png")
    head = "| set | " + " | ".join(scorers) + " | " + " | ".join(PEERS) + " | best peer | default − best peer |"
    verdict = (f"Best scorer over every set: **{best}**"
               + ("" if best == DEFAULT_SCORER else f"; the library default is still {DEFAULT_SCORER}: update it")
               + f". Mean AUROC: default {mean_default:.3f}, best peers {mean_best_peer:.3f}.\n")
    lines = [f"# Anomaly scoring report\n\n`{command}`\n", verdict, "AUROC (higher = better):\n", head,
             "|" + "---|" * (len(scorers) + len(PEERS) + 3)]
    for name, r in sets.items():
        lines.append(f"| {name} | " + " | ".join(f"{r['scorers'][s]:.3f}" for s in scorers) + " | "
                     + " | ".join(f"{r[p]:.3f}" for p in PEERS) + f" | {r['best_peer_name']} | {r['margin']:+.3f} |")
    lines += ["", "What the default detector flags (✓ = a true anomaly):", ""]
    for name, row in ev.items():
        if not name.startswith("guide_"):
            lines.append(f"- **{name}**: " + " · ".join(f"{'✓' if e['anomaly'] else '✗'} \"{e['text'][:90]}\""
                                                        for e in row["examples"]["most_unusual"]))
            lines.append("  - normal texts it scores highest: " + " · ".join(f"\"{e['text'][:90]}\""
                                                                             for e in row["examples"]["normal_scored_highest"][:2]))
    lines += ["", "| scorer | rows | rows/s | peak RSS (MB) |", "|---|---|---|---|"]
    lines += [f"| {DEFAULT_SCORER} | {int(n):,} | {tp[n]['rows_per_s']:,.0f} | {tp[n]['peak_rss_mb']:,.0f} |" for n in sizes]
    lines.append(f"| fast_ensemble | {FAST_ROWS:,} | {fast['rows_per_s']:,.0f} | {fast['peak_rss_mb']:,.0f} |")
    lines += ["", "![ROC](roc_sms.png)"]
    (work / "report.md").write_text("\n".join(lines) + "\n")


@click.command()
@click.option("--workdir", type=click.Path(file_okay=False), default="runs/anomaly", help="Where every stage writes.")
@click.option("--pretrain-minutes", type=float, default=0.0,
              help="Train a general news AE this long first and fine-tune every model from it (0 = each model from scratch, with its own tokenizer).")
@click.option("--minutes", type=float, default=2.0, help="Training time of each split's model.")
@click.option("--steps", type=int, default=None, help="Train each split's model for this many steps instead (e.g. on a GPU).")
@click.option("--throughput-rows", default="100000,1000000", help="Sizes of the generated files to score (comma-separated).")
@click.option("--guide", is_flag=True, help="Also run GUIDE's protocol as written (texts repeated across fit and test, which inflates every figure).")
@click.option("--only", default=None, help="Comma-separated split names to run (e.g. sms); default: all. For quick checks.")
@click.option("--set", "sets", multiple=True, metavar="SECTION.KEY=VALUE", help="Override a training config value (repeatable).")
@click.option("--results", type=click.Path(dir_okay=False), default=None, help="Also write anomaly.json here.")
@click.option("--force", is_flag=True, help="Re-run every stage, retraining from scratch.")
def main(workdir, pretrain_minutes, minutes, steps, throughput_rows, guide, only, sets, results, force) -> None:
    """prepare → train_* → throughput → evaluate → report, skipping stages that are up to date."""
    configure_logging()
    work = Path(workdir)
    work.mkdir(parents=True, exist_ok=True)
    command = "python -m pipelines.anomaly " + " ".join(sys.argv[1:])

    def build() -> list[Stage]:
        overrides = parse_overrides(sets)
        sizes = [int(x) for x in throughput_rows.split(",") if x.strip()]
        names = ["sms", *(f"trec_{c}" for c in TREC_CLASSES), *SNIPPET_SETS]
        if guide:
            names += ["guide_sms", *(f"guide_trec_{c}" for c in TREC_CLASSES)]
        if only:
            names = [n for n in names if n in only.split(",")] or names
        evaluated = names + [n for n, model in CROSS_DOMAIN.items() if model in names]
        splits = {n: work / "splits" / f"{n}.json" for n in evaluated}
        base = work / "general/final"
        stages = [Stage("prepare", lambda: _prepare(work / "splits"), list(splits.values()))]
        if pretrain_minutes > 0:
            general = load_config(None, {**overrides, "train.output_dir": str(work / "general"),
                                         "train.max_minutes": pretrain_minutes, "train.max_steps": 10**6})
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
            Stage("throughput", lambda: _throughput(finals[names[0]], work / "splits" / f"{names[0]}.fit.jsonl", sizes, work,
                                                    work / "throughput.json"),
                  [work / "throughput.json"], [finals[names[0]] / "model.safetensors"],
                  params={"sizes": sizes, "scorer": DEFAULT_SCORER, "members": ENSEMBLES.get(DEFAULT_SCORER)}),
            Stage("throughput_fast", lambda: _throughput(finals[names[0]], work / "splits" / f"{names[0]}.fit.jsonl",
                                                         [FAST_ROWS], work, work / "throughput_fast.json", "fast_ensemble"),
                  [work / "throughput_fast.json"], [finals[names[0]] / "model.safetensors"],
                  params={"sizes": [FAST_ROWS], "scorer": "fast_ensemble"}),
            Stage("evaluate", lambda: _evaluate(splits, finals, work / "eval.json"), [work / "eval.json"], weights,
                  params={"scorers": SCORERS, "ensembles": ENSEMBLES, "tail": [TAIL_SHARE, TAIL_MIN]}),
            Stage("report", lambda: _report(work / "eval.json", work / "throughput.json", splits, finals, work, command,
                                            Path(results) if results else None),
                  [work / "report.md", work / "anomaly.json"],
                  [work / "eval.json", work / "throughput.json", work / "throughput_fast.json"],
                  params={"results": results, "default": DEFAULT_SCORER}),
        ]
        return stages

    run_pipeline(build, work / "report.md", force)


if __name__ == "__main__":
    main()
