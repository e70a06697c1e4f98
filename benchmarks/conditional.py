"""Benchmark (issue 8): style transfer with the conditional VAE, one-step clustering with the mixture VAE.

Every model is trained with the `textae train` CLI, each started from the foundation autoencoder
(`--init-from`, default runs/bench-default/final, which `make bench` trains on news):
  cvae-sms    --family cvae on SMS, label ham/spam
  cvae-trec   --family cvae on TREC questions, label = coarse type (6)
  cvae-sms-no-adversary   the SMS run with adversary_weight 0 (the ablation)
  cvae-sms-z128           the SMS run with a 128-dim z instead of 32 (does a larger code keep content?)
  gmvae-trec  --family gmvae, 6 components;   vae-trec  the plain VAE, same settings
  gmvae-news  --family gmvae on news sentences, 9 components (one per outlet); vae-news likewise
A finished run is reused (pass --fresh to retrain). Every figure is measured on the rows the run
held out (its validation split), which no model trained on:

transfer: each held-out row rewritten toward another label (SMS: ham → spam and spam → ham;
  TREC: a random other type, seed 0), greedy; again with repetition_penalty 1.2. accuracy = how often a TF-IDF logistic regression trained
  on the training rows' real labels assigns the target label; bleu = corpus BLEU of the rewrite
  against its source; similarity = all-MiniLM-L6-v2 cosine to the source. Rows beside it: the
  source copied unchanged, and the model's reconstruction with the row's own predicted label.
  How much label z still holds: a logistic-regression probe trained on the training rows' z,
  scored on held-out z, beside the majority label's share.
cluster: each held-out row's mixture component against its label (TREC coarse type; news: the
  article's outlet), NMI and purity, beside k-means with as many clusters on TF-IDF vectors and
  on the plain VAE's posterior means (both fitted on training rows, then applied to held-out).
Writes benchmarks/results/conditional.json and cluster_map_trec.png (the mixture VAE's codes of
TREC questions, coloured by their real type).
"""

from __future__ import annotations

import argparse
import json
import random
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from common import device_name, train_run

RESULTS = Path(__file__).parent / "results"
STEPS = 1200  # per run; about 5 minutes on 2 CPU cores
WHOLE_ROWS = ["--set", "data.split_sentences=false", "--set", "data.min_words=1", "--set", "data.validation_size=0.1"]
DATASETS = {  # name: (source, label column, data options)
    "sms": ("sms", "label", WHOLE_ROWS),
    "trec": ("trec", "coarse", WHOLE_ROWS),
    "news": ("news", "source", []),
}
TFIDF = {"sublinear_tf": True, "ngram_range": (1, 2), "min_df": 2}


def runs(init: str) -> dict[str, tuple[str, list[str]]]:
    """name: (dataset, textae train arguments)."""
    common = ["--max-steps", str(STEPS), "--init-from", init, "--set", "train.eval_every=600"]
    out = {}
    for dataset in ("sms", "trec"):
        source, label, data = DATASETS[dataset]
        out[f"cvae-{dataset}"] = (dataset, ["--data", source, "--family", "cvae", *common, *data,
                                            "--set", f"model.bottleneck={{label_column: {label}}}"])
    dataset, (source, label, data) = "sms", DATASETS["sms"]  # the ablation: no penalty on label information in z
    out["cvae-sms-no-adversary"] = (dataset, ["--data", source, "--family", "cvae", *common, *data,
                                              "--set", f"model.bottleneck={{label_column: {label}, adversary_weight: 0.0}}"])
    out["cvae-sms-z128"] = (dataset, ["--data", source, "--family", "cvae", *common, *data,  # a 4× larger content code
                                      "--set", f"model.bottleneck={{label_column: {label}, latent_dim: 128}}"])
    for dataset, components in (("trec", 6), ("news", 9)):
        source, _, data = DATASETS[dataset]
        out[f"gmvae-{dataset}"] = (dataset, ["--data", source, "--family", "gmvae", *common, *data,
                                             "--set", f"model.bottleneck={{components: {components}}}"])
        out[f"vae-{dataset}"] = (dataset, ["--data", source, "--family", "vae", *common, *data])
    return out


def splits(run: Path, label: str, limit: int) -> tuple[dict, dict]:
    """(train, held-out) texts and labels exactly as the run split them (its saved data config)."""
    from textae.config import load_config
    from textae.data import prepare

    data = prepare(load_config(run / "config.yaml").data)
    out = []
    for name, cap in (("train", None), ("validation", limit)):
        rows = data[name].select(range(min(cap or len(data[name]), len(data[name]))))
        out.append({"texts": list(rows["text"]), "labels": [str(v) for v in rows[label]]})
    return out[0], out[1]


def transfer_figures(run: Path, label: str, encoder, limit: int, **generate) -> dict:
    """`generate`: decoding options for the rewrites and reconstructions (e.g. repetition_penalty)."""
    import textae
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from textae.training.metrics import bleu
    from textae.transfer import labels as model_labels
    from textae.transfer import predict_labels, transfer

    train_rows, test = splits(run, label, limit)
    judge = make_pipeline(TfidfVectorizer(**TFIDF), LogisticRegression(max_iter=2000, C=10.0))
    judge.fit(train_rows["texts"], train_rows["labels"])
    ae = textae.load(run / "final")
    known = model_labels(ae)
    rng = random.Random(0)
    targets = [rng.choice([k for k in known if k != y]) for y in test["labels"]]
    texts = test["texts"]
    start = time.perf_counter()
    moved = [""] * len(texts)
    for target in sorted(set(targets)):  # one call per target label, rows put back in order
        rows = [i for i, t in enumerate(targets) if t == target]
        for i, text in zip(rows, transfer(ae, [texts[i] for i in rows], target, **generate)):
            moved[i] = text
    seconds = time.perf_counter() - start
    rebuilt = ae.reconstruct(texts, **generate)
    # How much label is left in the content code: a fresh probe on z, against always guessing the majority.
    dim = ae.model.bottleneck.cfg.latent_dim
    probe = LogisticRegression(max_iter=2000).fit(ae.encode(train_rows["texts"][:5000])[:, :dim], train_rows["labels"][:5000])
    probe_accuracy = float(np.mean(probe.predict(ae.encode(texts)[:, :dim]) == np.asarray(test["labels"])))

    def row(outputs: list[str], wanted: list[str]) -> dict:
        return {
            "accuracy": round(float(np.mean(judge.predict(outputs) == np.asarray(wanted))), 4),
            "bleu": round(bleu(outputs, texts), 2),
            "similarity": round(float(encoder.similarity(texts, outputs).mean()), 4),
        }

    return {
        **row(moved, targets),
        "copy_row": row(texts, targets),  # the source unchanged: how often the judge already says the target
        "reconstruction_row": row(rebuilt, test["labels"]),  # accuracy here = the judge keeps the source label
        "judge_accuracy_on_real_heldout": round(float(np.mean(judge.predict(texts) == np.asarray(test["labels"]))), 4),
        "label_probe_on_z_accuracy": round(probe_accuracy, 4),
        "majority_accuracy": round(max(test["labels"].count(y) for y in set(test["labels"])) / len(texts), 4),
        "model_label_accuracy_on_heldout": round(float(np.mean(np.asarray(predict_labels(ae, texts)) == np.asarray(test["labels"]))), 4),
        "heldout_rows": len(texts),
        "rows_per_s": round(len(texts) / seconds, 1),
        "examples": [{"source": s, "label": y, "to": t, "transferred": m}
                     for s, y, t, m in list(zip(texts, test["labels"], targets, moved))[:12]],
    }


def purity(truth: list[str], clusters: np.ndarray) -> float:
    """Fraction of rows whose cluster's majority label is their own."""
    from sklearn.metrics.cluster import contingency_matrix

    table = contingency_matrix(truth, clusters)
    return float(table.max(0).sum() / table.sum())


def cluster_figures(gmvae_run: Path, vae_run: Path, label: str, limit: int, fit_rows: int) -> dict:
    import textae
    from sklearn.cluster import KMeans
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.metrics import normalized_mutual_info_score as nmi
    from textae.clustering import cluster, top_words

    train_rows, test = splits(gmvae_run, label, limit)
    fit = train_rows["texts"][:fit_rows]
    ae = textae.load(gmvae_run / "final")
    c = ae.model.bottleneck.cfg.components
    start = time.perf_counter()
    probs = cluster(ae, test["texts"])
    seconds = time.perf_counter() - start
    mixture = probs.argmax(1)
    tfidf = TfidfVectorizer(**TFIDF).fit(fit)
    by_tfidf = KMeans(c, n_init=10, random_state=0).fit(tfidf.transform(fit)).predict(tfidf.transform(test["texts"]))
    vae = textae.load(vae_run / "final")
    by_vae = KMeans(c, n_init=10, random_state=0).fit(vae.encode(fit)).predict(vae.encode(test["texts"]))
    truth = test["labels"]
    return {
        "nmi": round(float(nmi(truth, mixture)), 4),
        "purity": round(purity(truth, mixture), 4),
        "kmeans_tfidf_nmi": round(float(nmi(truth, by_tfidf)), 4),
        "kmeans_tfidf_purity": round(purity(truth, by_tfidf), 4),
        "kmeans_vae_nmi": round(float(nmi(truth, by_vae)), 4),
        "kmeans_vae_purity": round(purity(truth, by_vae), 4),
        "majority_purity": round(max(truth.count(y) for y in set(truth)) / len(truth), 4),  # one cluster for all
        "components": c,
        "clusters_used": int(len(set(mixture.tolist()))),
        "mean_probability": round(float(probs.max(1).mean()), 4),
        "heldout_rows": len(truth),
        "kmeans_fit_rows": len(fit),
        "rows_per_s": round(len(truth) / seconds, 1),
        "top_words": {str(k): w for k, w in top_words(test["texts"], mixture, 8).items()},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", type=Path, default=Path("runs/bench-conditional"))
    parser.add_argument("--init-from", default="runs/bench-default/final", help="the foundation AE every run starts from")
    parser.add_argument("--fresh", action="store_true", help="retrain every run")
    parser.add_argument("--heldout", type=int, default=2000, help="held-out rows evaluated per dataset, at most")
    parser.add_argument("--quick", action="store_true", help="smoke test: 20 steps per run on 2,000 rows (figures meaningless)")
    args = parser.parse_args()
    quick = ["--max-steps", "20", "--set", "data.max_examples=2000", "--set", "train.eval_sentences=32"] if args.quick else []
    commands, minutes = {}, {}
    for name, (_, run_args) in runs(args.init_from).items():
        command, minutes[name] = train_run(args.root, name, run_args + quick, args.fresh)
        commands[name] = " ".join(command)

    from textae.similarity import SentenceEncoder

    encoder, limit = SentenceEncoder(), 100 if args.quick else args.heldout
    transfer = {d: transfer_figures(args.root / f"cvae-{d}", DATASETS[d][1], encoder, limit) for d in ("sms", "trec")}
    ablation = {"sms_no_adversary": transfer_figures(args.root / "cvae-sms-no-adversary", "label", encoder, limit)}
    ablation["sms_z128"] = transfer_figures(args.root / "cvae-sms-z128", "label", encoder, limit)
    for d in ("sms", "trec"):  # the same models, decoded with CTRL's usual repetition penalty (fixed, not tuned here)
        ablation[f"{d}_repetition_penalty_1.2"] = transfer_figures(
            args.root / f"cvae-{d}", DATASETS[d][1], encoder, limit, repetition_penalty=1.2)
    cluster = {d: cluster_figures(args.root / f"gmvae-{d}", args.root / f"vae-{d}", DATASETS[d][1], limit, 300 if args.quick else 10000)
               for d in ("trec", "news")}
    map_path = (args.root if args.quick else RESULTS) / "cluster_map_trec.png"
    plot_cmd = ["textae", "plot", "--model", str(args.root / "gmvae-trec" / "final"), "--data", "trec", "--label-column", "coarse",
                "--no-split-sentences", "--max-points", "2000", "--output", str(map_path)]
    subprocess.run([sys.executable, "-m", "textae", *plot_cmd[1:]], check=True)
    result = {
        "transfer": transfer,
        "transfer_ablation": ablation,
        "cluster": cluster,
        "train_commands": commands,
        "train_wall_minutes": minutes,
        "plot_command": " ".join(plot_cmd),
        "device": device_name(),
        "command": "python benchmarks/conditional.py" + (f" --init-from {args.init_from}" if args.init_from != "runs/bench-default/final" else ""),
    }
    if args.quick:
        print(json.dumps(result, indent=1)[:3000])
        return
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "conditional.json").write_text(json.dumps(result, indent=2) + "\n")
    print(f"\n{'transfer':30} {'accuracy':>9} {'BLEU':>6} {'similarity':>11} {'probe(z)':>9} {'majority':>9}   "
          "(copy: acc / reconstruction: acc BLEU sim)")
    for d, t in {**transfer, **ablation}.items():
        c, r = t["copy_row"], t["reconstruction_row"]
        print(f"{d:30} {t['accuracy']:9.3f} {t['bleu']:6.1f} {t['similarity']:11.3f} {t['label_probe_on_z_accuracy']:9.3f} "
              f"{t['majority_accuracy']:9.3f}   (copy {c['accuracy']:.3f} / rebuilt {r['accuracy']:.3f} {r['bleu']:.1f} {r['similarity']:.3f})")
    print(f"\n{'cluster':14} {'NMI':>6} {'purity':>7} {'kmeans-tfidf':>13} {'kmeans-vae':>11} {'majority':>9}")
    for d, c in cluster.items():
        print(f"{d:14} {c['nmi']:6.3f} {c['purity']:7.3f} {c['kmeans_tfidf_nmi']:13.3f} {c['kmeans_vae_nmi']:11.3f} {c['majority_purity']:9.3f}")
    print(f"device {result['device']}")


if __name__ == "__main__":
    main()
