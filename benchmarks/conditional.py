"""Benchmark (issues 8, 24): style transfer (the cae family; the cvae as ablation), one-step clustering (gmvae).

Every model is trained with the `textae train` CLI, each started from the foundation autoencoder
(`--init-from`, default runs/bench-default/final, which `make bench` trains on news):
  cae-sms, cae-trec      --family cae (configs/cae.yaml): label markers deleted from the input, plain
                         codes, the decoder told the label; the transfer model
  cvae-sms, cvae-trec    --family cvae; cvae-sms-no-adversary (adversary_weight 0); cvae-sms-z128 (--parts ablation)
  gmvae-trec, vae-trec   6 components; gmvae-news, vae-news: 9, one per outlet (--parts cluster); the gmvaes
                         learn MiniLM's geometry too (semantic_weight SEMANTIC_WEIGHT, set before any figure),
                         and are trained once per seed of CLUSTER_SEEDS (gmvae-trec-seed1, ...)
A finished run of the same command is reused (pass --fresh to retrain). Every figure is measured on the rows the run
held out (its validation split), which no model trained on:

transfer: each held-out row rewritten toward another label (SMS: ham → spam and spam → ham; TREC: a
  random other type, seed 0). accuracy = how often a TF-IDF logistic regression trained on the
  training rows' real labels assigns the target label (`accuracy_by_target`: per target label);
  similarity = all-MiniLM-L6-v2 cosine to the source; bleu = corpus BLEU against the source;
  nll_ratio = per-token NLL of the outputs over that of the sources under an evaluation LM
  (benchmarks/peer_lm.py, trained only for this, 3 minutes on the set's training rows);
  appended_by_target = where outputs keep the source whole and add to it (exemplars), how varied the
  additions are (rows, distinct, top_share: the commonest one's share of rows). Peer rows,
  same keys: `copy` (the source), `retrieve` (the training text of the target label nearest the
  source by MiniLM), `arithmetic` (the cae's content code plus the mean
  difference between the target's and the source's label centroids of training codes, decoded with
  its own label part: latent vector arithmetic, Shen et al. 2020).
cluster: each held-out row's mixture component against its label (TREC coarse type; news: the
  article's outlet), NMI and purity (mean over the gmvaes trained with CLUSTER_SEEDS; each under
  `by_seed`, as is k-means on each one's codes), beside k-means with as many clusters on TF-IDF vectors, on
  MiniLM embeddings, on the gmvae's own codes and on the plain VAE's (all fitted on training rows).
Parts not run (--parts) are copied from --reuse-from, a previous conditional.json, and named under
`reused`. Writes benchmarks/results/conditional.json, conditional_knob.png (accuracy against
similarity over the cae's label weight, `textae transfer --label-weight`) and cluster_map_trec.png.
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
STEPS = 1200  # per run; about 5 to 8 minutes on 2 CPU cores
EVAL_LM_MINUTES = 3.0
KNOB_WEIGHTS = (0.0, 1.0, 2.0, 3.0, 4.0, 8.0)  # the cae's label weight (textae.edits): the knob between content and label
WHOLE_ROWS = ["--set", "data.split_sentences=false", "--set", "data.min_words=1", "--set", "data.validation_size=0.1"]
DATASETS = {  # name: (source, label column, data options)
    "sms": ("sms", "label", WHOLE_ROWS),
    "trec": ("trec", "coarse", WHOLE_ROWS),
    "news": ("news", "source", []),
}
TFIDF = {"sublinear_tf": True, "ngram_range": (1, 2), "min_df": 2}
PARTS = ("transfer", "knob", "ablation", "cluster")
SEMANTIC_WEIGHT = 1.0  # the gmvae's semantic term: as much as the per-token reconstruction loss, not tuned
CLUSTER_SEEDS = (0, 1)  # each gmvae is trained with these seeds and its figures are their mean: one seed is not a figure


def runs(init: str, parts: set[str]) -> dict[str, tuple[str, list[str]]]:
    """name: (dataset, textae train arguments) of the runs the parts need."""
    common = ["--max-steps", str(STEPS), "--init-from", init, "--set", "train.eval_every=600"]
    out = {}

    def add(name: str, dataset: str, family: str, options: str = "", extra: tuple[str, ...] = ()) -> None:
        source, label, data = DATASETS[dataset]
        bottleneck = ["--set", f"model.bottleneck={{label_column: {label}{options}}}"] if family in ("cae", "cvae") else \
            ["--set", f"model.bottleneck={{{options.lstrip(', ')}}}"] if options else []
        out[name] = (dataset, ["--data", source, "--family", family, *common, *extra, *data, *bottleneck])

    for dataset in ("sms", "trec"):
        if parts & {"transfer", "knob"}:
            add(f"cae-{dataset}", dataset, "cae")
        if "ablation" in parts:
            add(f"cvae-{dataset}", dataset, "cvae")
    if "ablation" in parts:
        add("cvae-sms-no-adversary", "sms", "cvae", ", adversary_weight: 0.0")  # no penalty on label information in z
        add("cvae-sms-z128", "sms", "cvae", ", latent_dim: 128")  # a 4x larger content code
    if "cluster" in parts:
        for dataset, components in (("trec", 6), ("news", 9)):
            for seed in CLUSTER_SEEDS:
                add(gmvae_name(dataset, seed), dataset, "gmvae", f"components: {components}, semantic_weight: {SEMANTIC_WEIGHT}",
                    ("--set", f"train.seed={seed}") if seed else ())
            add(f"vae-{dataset}", dataset, "vae")
    return out


def gmvae_name(dataset: str, seed: int) -> str:
    return f"gmvae-{dataset}" + (f"-seed{seed}" if seed else "")


def splits(run: Path, label: str, limit: int) -> tuple[dict, dict]:
    """(train, held-out) texts and labels exactly as the run split them (its saved data config)."""
    from textae.config import load_config

    return split_rows(load_config(run / "config.yaml").data, label, limit)


def split_rows(data_config, label: str, limit: int | None) -> tuple[dict, dict]:
    """(train, held-out) texts and labels of a data config's split, at most `limit` held-out rows."""
    from textae.data import prepare

    data = prepare(data_config)
    out = []
    for name, cap in (("train", None), ("validation", limit)):
        rows = data[name].select(range(min(cap or len(data[name]), len(data[name]))))
        out.append({"texts": list(rows["text"]), "labels": [str(v) for v in rows[label]]})
    return out[0], out[1]


def eval_lm(root: Path, dataset: str, run: Path, minutes: float):
    """The fluency judge of one set: a small LM trained only for evaluation on the run's training rows."""
    from peer_lm import PeerLM
    from peer_lm import train as train_lm
    from textae.config import load_config

    out = root / f"eval-lm-{dataset}"
    if not (out / "peer_lm.json").is_file():
        print(f"--- eval LM for {dataset}: {minutes} minutes", flush=True)
        train_lm(run / "final", out, minutes, data=load_config(run / "config.yaml").data)
    return PeerLM(out)


class Judges:
    """What every row of one set is scored with: the label judge, MiniLM, the evaluation LM."""

    def __init__(self, train_rows: dict, test: dict, encoder, lm=None):
        from sklearn.feature_extraction.text import TfidfVectorizer
        from sklearn.linear_model import LogisticRegression
        from sklearn.pipeline import make_pipeline

        self.judge = make_pipeline(TfidfVectorizer(**TFIDF), LogisticRegression(max_iter=2000, C=10.0))
        self.judge.fit(train_rows["texts"], train_rows["labels"])
        self.texts, self.encoder, self.lm = test["texts"], encoder, lm
        self.source_embeddings = encoder.encode(self.texts)  # once: every row is compared with the same sources
        self.source_nll = float(lm.token_nll(self.texts).mean()) if lm else None

    def row(self, outputs: list[str], wanted: list[str]) -> dict:
        from textae.training.metrics import bleu

        wanted = np.asarray(wanted)
        right = self.judge.predict(outputs) == wanted
        out = {
            "accuracy": round(float(np.mean(right)), 4),
            "accuracy_by_target": {str(t): round(float(np.mean(right[wanted == t])), 4) for t in sorted(set(wanted))},
            "bleu": round(bleu(outputs, self.texts), 2),
            "similarity": round(float((self.source_embeddings * self.encoder.encode(outputs)).sum(1).mean()), 4),
        }
        if self.lm is not None:
            out["nll_ratio"] = round(float(self.lm.token_nll(outputs).mean()) / self.source_nll, 4)
        appended = self.appended(outputs, wanted)
        if appended:
            out["appended_by_target"] = appended
        return out

    def appended(self, outputs: list[str], wanted: np.ndarray) -> dict:
        """Per target label, for the outputs that keep their source whole and add to it (the cae's exemplars):
        how many rows, how many distinct additions, and the share of rows given the commonest one."""
        from collections import Counter

        out = {}
        for t in sorted(set(wanted)):
            tails = [o[len(s.rstrip()):].lstrip(". ") for s, o, w in zip(self.texts, outputs, wanted)
                     if w == t and o.startswith(s.rstrip()) and len(o) > len(s.rstrip())]
            if tails:
                counts = Counter(tails)
                out[str(t)] = {"rows": len(tails), "distinct": len(counts),
                               "top_share": round(counts.most_common(1)[0][1] / len(tails), 4)}
        return out


def rewrite_all(ae, texts: list[str], targets: list[str], **generate) -> tuple[list[str], float]:
    """Each text rewritten toward its own target label (one call per label), and the seconds it took."""
    from textae.transfer import transfer

    start = time.perf_counter()
    moved = [""] * len(texts)
    for target in sorted(set(targets)):
        rows = [i for i, t in enumerate(targets) if t == target]
        for i, text in zip(rows, transfer(ae, [texts[i] for i in rows], target, **generate)):
            moved[i] = text
    return moved, time.perf_counter() - start


def retrieve(encoder, train_rows: dict, emb: np.ndarray, targets: list[str]) -> list[str]:
    """The peer that keeps the topic and flips the label: the nearest training text of the target label by
    MiniLM (`emb`: the sources' embeddings)."""
    pool, labels = train_rows["texts"], np.asarray(train_rows["labels"])
    pool_emb = encoder.encode(pool)
    out = []
    for e, t in zip(emb, targets):
        idx = np.flatnonzero(labels == t)
        out.append(pool[idx[np.argmax(pool_emb[idx] @ e)]])
    return out


def arithmetic(ae, train_rows: dict, test: dict, targets: list[str]) -> list[str]:
    """Latent vector arithmetic on the model's content code: + (target centroid - source centroid)."""
    import torch

    bottleneck = ae.model.bottleneck
    content, _ = bottleneck.split(torch.as_tensor(ae.encode(train_rows["texts"])))
    labels = np.asarray(train_rows["labels"])
    centroid = {y: content[torch.as_tensor(labels == y)].mean(0) for y in set(labels)}
    codes = torch.as_tensor(ae.encode(test["texts"]))
    part, p = bottleneck.split(codes)
    moved = part + torch.stack([centroid[t] - centroid[y] for t, y in zip(targets, test["labels"])])
    return ae.decode(torch.cat([moved, p], dim=-1))


def transfer_figures(run: Path, label: str, encoder, limit: int, lm=None, peers: bool = False, **generate) -> dict:
    """`generate`: decoding options for the rewrites and reconstructions (e.g. repetition_penalty).
    `peers`: add the copy, retrieve and arithmetic rows."""
    import textae
    import torch
    from sklearn.linear_model import LogisticRegression
    from textae.transfer import labels as model_labels
    from textae.transfer import predict_labels

    train_rows, test = splits(run, label, limit)
    judges = Judges(train_rows, test, encoder, lm)
    ae = textae.load(run / "final")
    targets = random_targets(model_labels(ae), test["labels"])
    texts = test["texts"]
    moved, seconds = rewrite_all(ae, texts, targets, **generate)
    rebuilt = ae.reconstruct(texts, **generate)
    # How much label is left in the content code: a fresh probe on it, against always guessing the majority.
    def split(codes: np.ndarray) -> np.ndarray:
        return ae.model.bottleneck.split(torch.as_tensor(codes))[0].numpy()

    probe = LogisticRegression(max_iter=2000).fit(split(ae.encode(train_rows["texts"][:5000])), train_rows["labels"][:5000])
    probe_accuracy = float(np.mean(probe.predict(split(ae.encode(texts))) == np.asarray(test["labels"])))
    out = {
        **judges.row(moved, targets),
        "copy_row": judges.row(texts, targets),  # the source unchanged: how often the judge already says the target
        "reconstruction_row": judges.row(rebuilt, test["labels"]),  # accuracy here = the judge keeps the source label
        "judge_accuracy_on_real_heldout": round(float(np.mean(judges.judge.predict(texts) == np.asarray(test["labels"]))), 4),
        "label_probe_on_z_accuracy": round(probe_accuracy, 4),
        "majority_accuracy": round(max(test["labels"].count(y) for y in set(test["labels"])) / len(texts), 4),
        "model_label_accuracy_on_heldout": round(float(np.mean(np.asarray(predict_labels(ae, texts)) == np.asarray(test["labels"]))), 4),
        "heldout_rows": len(texts),
        "rows_per_s": round(len(texts) / seconds, 1),
    }
    examples = {"source": texts, "label": test["labels"], "to": targets, "transferred": moved}
    if peers:
        retrieved = retrieve(encoder, train_rows, judges.source_embeddings, targets)
        moved_by_arithmetic = arithmetic(ae, train_rows, test, targets)
        out["copy"] = out["copy_row"]
        out["retrieve"] = judges.row(retrieved, targets)
        out["arithmetic"] = judges.row(moved_by_arithmetic, targets)
        examples.update(retrieved=retrieved, arithmetic=moved_by_arithmetic)
    out["examples"] = [dict(zip(examples, row)) for row in list(zip(*examples.values()))[:20]]
    return out


def purity(truth: list[str], clusters: np.ndarray) -> float:
    """Fraction of rows whose cluster's majority label is their own."""
    from sklearn.metrics.cluster import contingency_matrix

    table = contingency_matrix(truth, clusters)
    return float(table.max(0).sum() / table.sum())


def cluster_figures(gmvae_runs: list[Path], vae_run: Path, label: str, limit: int, fit_rows: int, encoder) -> dict:
    """The mixture's figures and k-means on its own codes as the mean over the gmvae runs (seeds; each one's under
    `by_seed`), the other peers once; components, clusters_used, mean_probability, rows_per_s and top_words are
    the first run's."""
    import textae
    from sklearn.cluster import KMeans
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.metrics import normalized_mutual_info_score as nmi
    from textae.clustering import cluster, top_words

    train_rows, test = splits(gmvae_runs[0], label, limit)
    fit, truth = train_rows["texts"][:fit_rows], test["labels"]

    def kmeans(c: int, train_x, test_x) -> np.ndarray:
        return KMeans(c, n_init=10, random_state=0).fit(train_x).predict(test_x)

    by_seed, first = [], None
    for run in gmvae_runs:
        ae = textae.load(run / "final")
        c = ae.model.bottleneck.cfg.components
        start = time.perf_counter()
        probs = cluster(ae, test["texts"])
        seconds = time.perf_counter() - start
        mixture, codes = probs.argmax(1), kmeans(c, ae.encode(fit), ae.encode(test["texts"]))
        by_seed.append({"run": run.name, "nmi": round(float(nmi(truth, mixture)), 4), "purity": round(purity(truth, mixture), 4),
                        "kmeans_codes_nmi": round(float(nmi(truth, codes)), 4), "kmeans_codes_purity": round(purity(truth, codes), 4)})
        first = first or (c, probs, mixture, seconds)
    c, probs, mixture, seconds = first
    tfidf, vae = TfidfVectorizer(**TFIDF).fit(fit), textae.load(vae_run / "final")
    by = {
        "tfidf": kmeans(c, tfidf.transform(fit), tfidf.transform(test["texts"])),
        "minilm": kmeans(c, encoder.encode(fit), encoder.encode(test["texts"])),
        "vae": kmeans(c, vae.encode(fit), vae.encode(test["texts"])),
    }
    mean = {k: round(float(np.mean([row[k] for row in by_seed])), 4) for k in by_seed[0] if k != "run"}
    return {
        **mean,
        **{f"kmeans_{k}_nmi": round(float(nmi(truth, v)), 4) for k, v in by.items()},
        **{f"kmeans_{k}_purity": round(purity(truth, v), 4) for k, v in by.items()},
        "by_seed": by_seed,
        "majority_purity": round(max(truth.count(y) for y in set(truth)) / len(truth), 4),  # one cluster for all
        "components": c,
        "clusters_used": int(len(set(mixture.tolist()))),
        "mean_probability": round(float(probs.max(1).mean()), 4),
        "heldout_rows": len(truth),
        "kmeans_fit_rows": len(fit),
        "rows_per_s": round(len(truth) / seconds, 1),
        "top_words": {str(k): w for k, w in top_words(test["texts"], mixture, 8).items()},
    }


def random_targets(known: list[str], labels: list[str]) -> list[str]:
    """Each row's target: a random other label of the model's (seed 0), so every run rewrites toward the same."""
    rng = random.Random(0)
    return [rng.choice([k for k in known if k != y]) for y in labels]


def weight_rows(ae, judges: Judges, texts: list[str], targets: list[str], weights, examples: int = 0) -> list[dict]:
    """The judges' row of the cae's transfer at each label weight; with its first `examples` rewrites if asked."""
    rows = []
    for w in weights:
        moved = rewrite_all(ae, texts, targets, label_weight=w)[0]
        rows.append({"label_weight": w, **judges.row(moved, targets)})
        if examples:
            rows[-1]["examples"] = [{"source": s, "to": t, "transferred": m}
                                    for s, t, m in list(zip(texts, targets, moved))[:examples]]
    return rows


def knob_figures(run: Path, label: str, encoder, limit: int) -> list[dict]:
    """Accuracy, similarity and BLEU of the cae's transfer at each label weight of KNOB_WEIGHTS."""
    import textae

    train_rows, test = splits(run, label, limit)
    ae = textae.load(run / "final")
    targets = random_targets(ae.model.bottleneck.cfg.labels, test["labels"])
    return weight_rows(ae, Judges(train_rows, test, encoder), test["texts"], targets, KNOB_WEIGHTS)


def knob_plot(knob: dict, path: Path) -> None:
    """Accuracy against similarity, one line per set through its label weights, with the targets."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4.5))
    for dataset, points in knob.items():
        pts = sorted(points, key=lambda p: p["label_weight"])
        ax.plot([p["similarity"] for p in pts], [p["accuracy"] for p in pts], marker="o", label=dataset)
        for p in pts:
            ax.annotate(f"{p['label_weight']:g}", (p["similarity"], p["accuracy"]), textcoords="offset points", xytext=(4, 4))
    ax.axhline(0.7, color="grey", ls=":")
    ax.axvline(0.5, color="grey", ls=":")
    ax.set_xlabel("MiniLM similarity to the source")
    ax.set_ylabel("judge accuracy (target label)")
    ax.set_title("cae transfer: the label weight (annotated) trades content for label")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", type=Path, default=Path("runs/bench-conditional"))
    parser.add_argument("--init-from", default="runs/bench-default/final", help="the foundation AE every run starts from")
    parser.add_argument("--fresh", action="store_true", help="retrain every run")
    parser.add_argument("--heldout", type=int, default=2000, help="held-out rows evaluated per dataset, at most")
    parser.add_argument("--parts", default=",".join(PARTS), help=f"comma-separated, of {', '.join(PARTS)}")
    parser.add_argument("--reuse-from", type=Path, help="a previous conditional.json: the parts not run are copied from it")
    parser.add_argument("--quick", action="store_true", help="smoke test: 20 steps per run on 2,000 rows (figures meaningless)")
    args = parser.parse_args()
    parts = set(args.parts.split(","))
    if not parts <= set(PARTS):
        parser.error(f"--parts takes {', '.join(PARTS)}")
    quick = ["--max-steps", "20", "--set", "data.max_examples=2000", "--set", "train.eval_sentences=32"] if args.quick else []
    commands, minutes = {}, {}
    for name, (_, run_args) in runs(args.init_from, parts).items():
        command, minutes[name] = train_run(args.root, name, run_args + quick, args.fresh)
        commands[name] = " ".join(command)

    from textae.similarity import SentenceEncoder

    encoder, limit = SentenceEncoder(), 100 if args.quick else args.heldout
    result: dict = {}
    if "transfer" in parts:
        lms = {d: eval_lm(args.root, d, args.root / f"cae-{d}", 0.2 if args.quick else EVAL_LM_MINUTES) for d in ("sms", "trec")}
        result["transfer"] = {d: transfer_figures(args.root / f"cae-{d}", DATASETS[d][1], encoder, limit, lms[d], peers=True)
                              for d in ("sms", "trec")}
        result["eval_lm"] = {d: json.loads((args.root / f"eval-lm-{d}" / "peer_lm.json").read_text()) for d in lms}
    if "knob" in parts:
        result["knob"] = {d: knob_figures(args.root / f"cae-{d}", DATASETS[d][1], encoder, limit) for d in ("sms", "trec")}
        knob = result["knob"]
        knob_plot(knob, (args.root if args.quick else RESULTS) / "conditional_knob.png")
    if "ablation" in parts:
        result["cvae_transfer"] = {d: transfer_figures(args.root / f"cvae-{d}", DATASETS[d][1], encoder, limit) for d in ("sms", "trec")}
        ablation = {"sms_no_adversary": transfer_figures(args.root / "cvae-sms-no-adversary", "label", encoder, limit),
                    "sms_z128": transfer_figures(args.root / "cvae-sms-z128", "label", encoder, limit)}
        for d in ("sms", "trec"):  # the same models, decoded with CTRL's usual repetition penalty (fixed, not tuned here)
            ablation[f"{d}_repetition_penalty_1.2"] = transfer_figures(
                args.root / f"cvae-{d}", DATASETS[d][1], encoder, limit, repetition_penalty=1.2)
        result["transfer_ablation"] = ablation
    if "cluster" in parts:
        result["cluster"] = {d: cluster_figures([args.root / gmvae_name(d, seed) for seed in CLUSTER_SEEDS], args.root / f"vae-{d}",
                                                DATASETS[d][1], limit, 300 if args.quick else 10000, encoder) for d in ("trec", "news")}
        map_path = (args.root if args.quick else RESULTS) / "cluster_map_trec.png"
        plot_cmd = ["textae", "plot", "--model", str(args.root / gmvae_name("trec", CLUSTER_SEEDS[0]) / "final"), "--data", "trec", "--label-column",
                    "coarse", "--no-split-sentences", "--max-points", "2000", "--output", str(map_path), "--overwrite"]
        subprocess.run([sys.executable, "-m", "textae", *plot_cmd[1:]], check=True)
        result["plot_command"] = " ".join(plot_cmd)
    if args.reuse_from:
        previous = json.loads(args.reuse_from.read_text())
        reused = {k: v for k, v in previous.items() if k not in result and k not in ("train_commands", "train_wall_minutes",
                                                                                   "device", "command", "reused")}
        result.update(reused)
        result["reused"] = {"from": str(args.reuse_from), "keys": sorted(reused), "their_command": previous.get("command"),
                            "their_device": previous.get("device"), "before": previous.get("reused")}
        commands = {**previous.get("train_commands", {}), **commands}  # the reused parts' runs too
        minutes = {**previous.get("train_wall_minutes", {}), **minutes}
    result.update(train_commands=commands, train_wall_minutes=minutes, device=device_name(),
                  command=" ".join(["python", "benchmarks/conditional.py", *sys.argv[1:]]))
    if args.quick:
        print(json.dumps(result, indent=1)[:3000])
        return
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "conditional.json").write_text(json.dumps(result, indent=2) + "\n")
    report(result)


def report(result: dict) -> None:
    if "transfer" in result:
        print(f"\n{'transfer':18} {'accuracy':>9} {'similarity':>11} {'NLL ratio':>10} {'BLEU':>6}   (targets: accuracy >= 0.7 and "
              "similarity >= 0.5 together, NLL ratio <= 1.15)")
        for d, t in result["transfer"].items():
            for name, row in (("cae", t), ("copy", t["copy"]), ("retrieve", t["retrieve"]), ("arithmetic", t["arithmetic"])):
                by_target = ", ".join(f"to {k} {v:.3f}" for k, v in row.get("accuracy_by_target", {}).items())
                print(f"{d + ' ' + name:18} {row['accuracy']:9.3f} {row['similarity']:11.3f} {row.get('nll_ratio', float('nan')):10.3f} "
                      f"{row['bleu']:6.1f}   {by_target}")
        for d, t in result["transfer"].items():
            print(f"\n{d} examples:")
            for e in t["examples"][:8]:
                print(f"  {e['label']} -> {e['to']}: {e['source'][:100]}\n    cae:       {e['transferred'][:100]}"
                      f"\n    retrieve:  {e['retrieved'][:100]}")
    if "knob" in result:
        print("\nknob (label weight: accuracy / similarity)")
        for d, points in result["knob"].items():
            print(f"  {d}: " + ", ".join(f"{p['label_weight']:g}: {p['accuracy']:.3f} / {p['similarity']:.3f}" for p in points))
    if "cluster" in result:
        print(f"\n{'cluster':10} {'NMI':>6} {'purity':>7} {'km-tfidf':>9} {'km-minilm':>10} {'km-codes':>9} {'km-vae':>7}")
        for d, c in result["cluster"].items():
            print(f"{d:10} {c['nmi']:6.3f} {c['purity']:7.3f} {c['kmeans_tfidf_nmi']:9.3f} {c.get('kmeans_minilm_nmi', float('nan')):10.3f} "
                  f"{c.get('kmeans_codes_nmi', float('nan')):9.3f} {c['kmeans_vae_nmi']:7.3f}")
            for row in c.get("by_seed", []):
                print(f"  {row['run']:18} {row['nmi']:6.3f} {row['purity']:7.3f} {'':20} {row['kmeans_codes_nmi']:9.3f}")
        for d, c in result["cluster"].items():
            print(f"\n{d} clusters' top words (first seed):")
            for k, words in c["top_words"].items():
                print(f"  {k}: {', '.join(words)}")
    print(f"device {result['device']}")


if __name__ == "__main__":
    main()
