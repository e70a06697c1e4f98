"""Codes that write language: the recommended generative family against a peer language model, and a
rate–distortion table (held-out BLEU against code size) for every family.

    python benchmarks/generative.py --init-from runs/bench-default/final     (make bench-generative)

Every run starts from the foundation autoencoder that `make bench` / `make demo` trains (its minutes are
not counted). In order, one at a time:
1. the recommended model: `textae train --config configs/rae.yaml` for --minutes;
2. the peer: a decoder-only Transformer LM (benchmarks/peer_lm.py) of the same width, with the
   autoencoder's 2 + 2 layers as 4 layers, on the same training sentences for the same minutes;
3. rate–distortion: ae (code_dim), vq (heads) and rae (latent_dim) at four code sizes each, --rd-steps
   steps each, plus PCA of the foundation AE's codes at each size, decoded by its unchanged decoder.
Then, on news validation sentences no run trains on: MAUVE of 1,000 samples of each model against 1,000
held-out sentences (MiniLM features, mean of 3 seeds), copy rate, how much of its nearest training
sentence a sample keeps (rae, peer and held-out alike), distinct-2, the kde prior's bandwidth sweep,
interpolation and paraphrase figures (fluency judged by the peer LM), and the latent's health. Writes
benchmarks/results/generative.json and generative_rate_distortion.png.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from common import device_name, train_run
from peer_lm import PeerLM
from peer_lm import train as train_peer

RESULTS = Path(__file__).resolve().parent / "results"
TEMPERATURE = 1.0  # token sampling temperature of both samplers
MAUVE_SEEDS = (25, 26, 27)
SIZES = {  # family → (option, values); code size per sentence = 16 slots × ...
    "ae": ("model.code_dim", (128, 32, 16, 4)),  # floats
    "rae": ("model.bottleneck.latent_dim", (32, 16, 8, 4)),  # floats
    "vq": ("model.bottleneck.heads", (8, 4, 2, 1)),  # integers of log2(256) = 8 bits
}
PCA_SIZES = (64, 32, 16, 8, 4)


def key(text: str) -> str:
    return " ".join(text.lower().split())


def distinct2(texts: list[str]) -> float:
    grams = [tuple(w[i : i + 2]) for w in (key(t).split() for t in texts) for i in range(len(w) - 1)]
    return len(set(grams)) / max(1, len(grams))


def copy_rate(texts: list[str], train_keys: set[str]) -> float:
    """The share of texts equal to a training sentence (case and spacing aside)."""
    return round(sum(key(t) in train_keys for t in texts) / len(texts), 4)


def nearest_training_overlap(train_texts: list[str]) -> Callable[[list[str]], dict]:
    """A measure, fitted once on the training sentences: how much of its nearest training sentence (TF-IDF
    cosine) each text keeps, as sentence BLEU / 100; the mean, and the share keeping at least half (near
    copies that the exact copy rate does not count)."""
    from sklearn.feature_extraction.text import TfidfVectorizer

    from textae.latent import _overlap

    vectorizer = TfidfVectorizer(sublinear_tf=True).fit(train_texts)
    train = vectorizer.transform(train_texts)

    def measure(texts: list[str]) -> dict:
        nearest = np.asarray((vectorizer.transform(texts) @ train.T).argmax(axis=1)).ravel()
        overlaps = np.array([_overlap(t, train_texts[j]) for t, j in zip(texts, nearest)])
        return {"mean": round(float(overlaps.mean()), 4), "share_at_least_half": round(float((overlaps >= 0.5).mean()), 4)}

    return measure


def code_size(model_dir: Path) -> dict:
    """A model's code per sentence: floats, or bits for integer codes."""
    config = json.loads((model_dir / "config.json").read_text())
    options, k = config["bottleneck"], config["num_codes"]
    if config["family"] == "vq":
        return {"code_bits": int(k * options.get("heads", 4) * math.log2(options.get("codebook_size", 512)))}
    if config["family"] == "rae":
        return {"code_floats": k * options.get("latent_dim", 16)}
    return {"code_floats": k * config["code_dim"]}


def rd_args(family: str, value: int, init: Path, steps: int) -> list[str]:
    option, _ = SIZES[family]
    args = ["--init-from", str(init), "--max-steps", str(steps), "--max-minutes", "60", "--set", f"{option}={value}",
            "--set", f"train.eval_every={steps}", "--set", f"train.save_every={steps}"]
    if family == "rae":  # BLEU only: no prior is fitted
        return ["--config", "configs/rae.yaml", "--set", "model.bottleneck.prior_sentences=0", *args]
    if family == "vq":
        return ["--family", "vq", "--set", "model.bottleneck.codebook_size=256", *args]
    return args


def heldout_bleu(model_dir: Path, texts: list[str]) -> float:
    import textae
    from textae.training.metrics import bleu

    ae = textae.load(model_dir)
    return round(bleu(ae.reconstruct(texts), references(ae, texts)), 2)


def references(ae, texts: list[str]) -> list[str]:
    """What a model could rebuild: the texts through its tokenizer, cut to its positions."""
    return ae.tokenizer.batch_decode([x[:-1] for x in ae.token_ids(texts)], skip_special_tokens=True)


def pca_rows(init: Path, train_texts: list[str], texts: list[str]) -> list[dict]:
    """PCA of the foundation AE's code vectors (one basis shared by the slots) to each size, decoded unchanged."""
    import textae
    from textae.training.metrics import bleu

    ae = textae.load(init)
    fit = ae.encode(train_texts)  # (N, K, D)
    mean = fit.reshape(-1, fit.shape[-1]).mean(0)
    _, _, vt = np.linalg.svd(fit.reshape(-1, fit.shape[-1]) - mean, full_matrices=False)
    codes = ae.encode(texts)
    targets = references(ae, texts)
    rows = []
    for k in PCA_SIZES:
        basis = vt[:k]  # (k, D)
        rebuilt = (codes - mean) @ basis.T @ basis + mean
        rows.append({"code_floats": fit.shape[1] * k, "bleu": round(bleu(ae.decode(rebuilt.astype(np.float32)), targets), 2),
                     "train_minutes": 0.0})
    return rows


def mauve_score(encoder, reference: list[str], generated: list[str]) -> float:
    import mauve

    p, q = encoder.encode(reference), encoder.encode(generated)
    return round(float(np.mean([mauve.compute_mauve(p_features=p, q_features=q, seed=s, verbose=False).mauve
                                for s in MAUVE_SEEDS])), 4)


def mixture_samples(ae, train_texts: list[str], n: int, seed: int) -> list[str]:
    """The `prior: gmm` mixture (16 full-covariance Gaussians) fitted on the same model's codes of training
    sentences, sampled and decoded as that prior is (the decoder told sample_level): the ablation of the kde."""
    import torch
    from sklearn.mixture import GaussianMixture

    codes = ae.encode(train_texts)
    gmm = GaussianMixture(16, covariance_type="full", reg_covar=1e-3, max_iter=100, random_state=seed)
    gmm.fit(codes.reshape(len(codes), -1))
    drawn = gmm.sample(n)[0][np.random.default_rng(seed).permutation(n)].astype(np.float32).reshape(n, *codes.shape[1:])
    with ae.model.bottleneck.told(ae.model.bottleneck.cfg.sample_level):
        return ae.decode(drawn, do_sample=True, temperature=TEMPERATURE, generator=torch.Generator().manual_seed(seed))


def bandwidth_sweep(ae, encoder, reference: list[str], overlap: Callable[[list[str]], dict], train_keys: set[str]) -> list[dict]:
    """The kde prior's knob: samples at three bandwidths (the decoder told each), from closer to a training
    sentence (higher MAUVE, more of its wording kept) to farther."""
    from textae.latent import sample

    cfg, rows = ae.model.bottleneck.cfg, []
    for bandwidth in (0.15, 0.3, 0.6):
        previous, cfg.prior_bandwidth = cfg.prior_bandwidth, bandwidth
        try:
            texts = sample(ae, 1000, seed=0, do_sample=True, temperature=TEMPERATURE)
        finally:
            cfg.prior_bandwidth = previous
        rows.append({"bandwidth": bandwidth, "mauve": mauve_score(encoder, reference, texts),
                     "copy_rate": copy_rate(texts, train_keys), "nearest_training_overlap": overlap(texts),
                     "examples": texts[:5]})
    return rows


def decoder_noise_mauve(ae, encoder, reference: list[str], texts: list[str], seed: int = 0) -> dict:
    """MAUVE of held-out sentences' own codes plus Gaussian noise of 0, 0.5 and 1 code standard
    deviations, decoded at the benchmark's temperature (a decoder trained to be told its noise level
    is told each): how far from a real code the decoder still writes language, which bounds what any
    prior can reach."""
    import torch

    codes = ae.code_tensor(ae.encode(texts)).float()
    gen = torch.Generator().manual_seed(seed)
    out = {}
    for sd in (0.0, 0.5, 1.0):
        noisy = codes + sd * torch.randn(codes.shape, generator=gen)
        with ae.model.bottleneck.told(sd):
            decoded = ae.decode(noisy, do_sample=True, temperature=TEMPERATURE, generator=torch.Generator().manual_seed(seed))
        out[str(sd)] = mauve_score(encoder, reference, decoded)
    return out


def interpolation_figures(ae, peer: PeerLM, texts: list[str], pairs: int, seed: int) -> dict:
    from textae.latent import interpolate

    rng = random.Random(seed)
    ends, mids, novel, examples = [], [], 0, []
    for _ in range(pairs):
        a, b = rng.sample(texts, 2)
        path = interpolate(ae, a, b, steps=7)
        ends += [path[0], path[-1]]
        mids += path[1:-1]
        novel += sum(key(m) not in (key(path[0]), key(path[-1])) for m in path[1:-1])
        if len(examples) < 3:
            examples.append(path)
    ratio = float(peer.token_nll(mids).mean() / peer.token_nll(ends).mean())
    out = {"interpolation_novel_share": round(novel / len(mids), 4), "interpolation_nll_ratio": round(ratio, 4),
           "interpolation_examples": examples}
    if ae.model.bottleneck.cfg.prior == "diffusion":
        scale, ae.model.bottleneck.cfg.interpolation_scale = ae.model.bottleneck.cfg.interpolation_scale, 0.0
        try:  # the ablation: the same pairs on the path the prior does not pull back (the key keeps its old name)
            rng, straight = random.Random(seed), []
            for _ in range(pairs):
                straight += interpolate(ae, *rng.sample(texts, 2), steps=7)[1:-1]
        finally:
            ae.model.bottleneck.cfg.interpolation_scale = scale
        out["interpolation_nll_ratio_straight_path"] = round(float(peer.token_nll(straight).mean() / peer.token_nll(ends).mean()), 4)
    return out


def paraphrase_figures(ae, peer: PeerLM, encoder, texts: list[str]) -> dict:
    """The first `textae paraphrase` candidate as the CLI ranks it (by MiniLM meaning, the encoder that
    also judges similarity here, so that figure is optimistic), and as ranked by the model's own codes."""
    from textae.latent import paraphrase
    from textae.training.metrics import bleu

    out = {}
    for prefix, ranker in (("paraphrase", encoder), ("paraphrase_code_ranked", None)):
        found, stats = paraphrase(ae, texts, n=1, encoder=ranker)
        top = {p.index: p.text for p in found if p.rank == 1}
        sources = [texts[i] for i in sorted(top)]
        outputs = [top[i] for i in sorted(top)]
        out.update({
            f"{prefix}_similarity": round(float(encoder.similarity(sources, outputs).mean()), 4),
            f"{prefix}_self_bleu": round(bleu(outputs, sources), 2),
            f"{prefix}_nll_ratio": round(float(peer.token_nll(outputs).mean() / peer.token_nll(sources).mean()), 4),
            f"{prefix}_inputs_without": round(stats["inputs_without_paraphrase"], 4),
            f"{prefix}_examples": [{"source": s, "paraphrase": o} for s, o in list(zip(sources, outputs))[:20]],
        })
    return out


def health(ae, texts: list[str]) -> dict:
    import torch

    ids = ae.token_ids(texts)
    batches = []
    for start in range(0, len(ids), 128):
        x = ae.pad(ids[start : start + 128])
        batches.append({"input_ids": x, "attention_mask": x.ne(ae.model.config.pad_token_id)})
    with torch.no_grad():
        metrics = ae.model.latent_metrics(batches, nll_samples=0)
    return {k: round(float(v), 4) for k, v in metrics.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--init-from", type=Path, default=Path("runs/bench-default/final"),
                        help="The foundation autoencoder (`make bench` or `make demo` trains it).")
    parser.add_argument("--root", type=Path, default=Path("runs/bench-generative"))
    parser.add_argument("--minutes", type=float, default=20.0, help="Training minutes of the recommended model and the peer.")
    parser.add_argument("--steps", type=int, default=None,
                        help="Optimiser steps of the recommended model, the length of its cosine schedule (default: "
                             "configs/rae.yaml's, sized for a fast CPU; on a slower one set what fits --minutes, or "
                             "the run stops with its learning rate still high).")
    parser.add_argument("--rd-steps", type=int, default=600, help="Optimiser steps of each rate–distortion run (fixed budget).")
    parser.add_argument("--fresh", action="store_true", help="Retrain every run.")
    parser.add_argument("--rate-distortion-from", type=Path, default=None,
                        help="Reuse the rate_distortion rows of an earlier generative.json instead of step 3 "
                             "(they do not depend on the prior).")
    args = parser.parse_args()
    root, init = args.root, args.init_from
    from textae.config import DataConfig
    from textae.data.corpus import prepare_corpus

    splits = prepare_corpus(DataConfig()).splits
    train_keys = {key(t) for t in splits["train"]["text"]}
    validation = [t for t in splits["validation"]["text"] if key(t) not in train_keys]  # dedup is case-sensitive
    mauve_ref, heldout = validation[:1000], validation[1000:3000]  # samples are judged against sentences no metric reuses

    # 1. the recommended model
    rec_args = ["--config", "configs/rae.yaml", "--init-from", str(init), "--max-minutes", str(args.minutes),
                *(["--max-steps", str(args.steps)] if args.steps else [])]
    commands = {"rae": train_run(root, "rae", rec_args, args.fresh)[0]}
    rec_dir = root / "rae" / "final"
    ae_minutes = json.loads((rec_dir / "train_state.json").read_text())["elapsed_s"] / 60
    prior_fit = [e for e in map(json.loads, (root / "rae" / "metrics.jsonl").read_text().splitlines()) if "prior_minutes" in e]
    rec_minutes = ae_minutes + (prior_fit[-1]["prior_minutes"] if prior_fit else 0.0)  # the prior's training counts too
    # 2. the peer, for the same minutes
    peer_dir = root / "peer-lm"
    if args.fresh or not (peer_dir / "peer_lm.json").is_file():
        print(f"--- peer LM, {rec_minutes:.1f} minutes", flush=True)
        train_peer(init, peer_dir, rec_minutes)
    peer_info = json.loads((peer_dir / "peer_lm.json").read_text())
    commands["peer_lm"] = ["python", "benchmarks/peer_lm.py", "--tokenizer", str(init), "--minutes",  # a reused peer's own
                           f"{peer_info['minutes']:.2f}", "--output", str(peer_dir)]
    # 3. rate–distortion runs
    rd_dirs, earlier = {}, None
    if args.rate_distortion_from:
        earlier = json.loads(args.rate_distortion_from.read_text())
        commands.update({k: v.split() for k, v in earlier["train_commands"].items() if k.startswith("rd-")})
    for family, (_, values) in SIZES.items() if earlier is None else ():
        for value in values:
            name = f"rd-{family}-{value}"
            commands[name] = train_run(root, name, rd_args(family, value, init, args.rd_steps), args.fresh)[0]
            rd_dirs[(family, value)] = root / name / "final"

    import textae
    from textae.latent import sample
    from textae.similarity import SentenceEncoder

    encoder, peer, ae = SentenceEncoder(), PeerLM(peer_dir), textae.load(rec_dir)
    bleu_texts = heldout[:1000]
    prior_texts = list(splits["train"].shuffle(seed=0).select(range(10000))["text"])
    started = time.perf_counter()
    samples = sample(ae, 1000, seed=0, do_sample=True, temperature=TEMPERATURE)
    sample_seconds = time.perf_counter() - started
    greedy_samples = sample(ae, 1000, seed=0)
    overlap = nearest_training_overlap(splits["train"]["text"])
    peer_samples = peer.sample(1000, temperature=TEMPERATURE, seed=0)
    rec = {
        "family": "rae",
        **code_size(rec_dir),
        "bleu": heldout_bleu(rec_dir, bleu_texts),
        "prior": ae.model.bottleneck.cfg.prior,
        "prior_bandwidth": ae.model.bottleneck.cfg.prior_bandwidth,
        "train_minutes": round(rec_minutes, 2),
        "autoencoder_minutes": round(ae_minutes, 2),
        "prior_steps": prior_fit[-1]["prior_steps"] if prior_fit else 0,
        "wall_minutes": float((root / "rae" / "wall_minutes.txt").read_text()),  # with evaluation and the prior's fit
        "mauve": mauve_score(encoder, mauve_ref, samples),
        "peer_lm_mauve": mauve_score(encoder, mauve_ref, peer_samples),
        "mauve_greedy_decoding": mauve_score(encoder, mauve_ref, greedy_samples),
        "mixture_prior_mauve": mauve_score(encoder, mauve_ref, mixture_samples(ae, prior_texts, 1000, seed=0)),
        "mauve_prior_temperature_0.7": mauve_score(encoder, mauve_ref, sample(ae, 1000, seed=0, do_sample=True,
                                                                              temperature=TEMPERATURE, prior_temperature=0.7)),
        "decoder_noise_mauve": decoder_noise_mauve(ae, encoder, mauve_ref, heldout[:1000]),
        "bandwidth_sweep": bandwidth_sweep(ae, encoder, mauve_ref, overlap, train_keys)
        if ae.model.bottleneck.cfg.prior == "kde" else [],
        "heldout_mauve": mauve_score(encoder, mauve_ref, heldout[:1000]),  # the ceiling: real sentences
        "copy_rate": copy_rate(samples, train_keys),
        "peer_lm_copy_rate": copy_rate(peer_samples, train_keys),
        "nearest_training_overlap": overlap(samples),
        "peer_lm_nearest_training_overlap": overlap(peer_samples),
        "heldout_nearest_training_overlap": overlap(heldout[:1000]),
        "distinct2": round(distinct2(samples), 4),
        "peer_lm_distinct2": round(distinct2(peer_samples), 4),
        "heldout_distinct2": round(distinct2(heldout[:1000]), 4),
        "sample_nll": round(float(peer.token_nll(samples).mean()), 4),
        "peer_lm_sample_nll_self_scored": round(float(peer.token_nll(peer_samples).mean()), 4),
        "heldout_nll": round(float(peer.token_nll(heldout[:1000]).mean()), 4),
        "samples_per_second": round(len(samples) / sample_seconds, 1),
        "temperature": TEMPERATURE,
        "mauve_features": "all-MiniLM-L6-v2 sentence embeddings (textae.similarity); mean over k-means seeds 25, 26, 27",
        **interpolation_figures(ae, peer, heldout, 200, seed=0),
        **paraphrase_figures(ae, peer, encoder, heldout[:500]),
        **health(ae, heldout),
        "health_sentences": len(heldout),
        "sample_examples": samples[:20],
        "peer_lm_sample_examples": peer_samples[:20],
    }
    rate_distortion = {family: [] for family in SIZES}
    if earlier is not None:
        rate_distortion = earlier["rate_distortion"]
    for (family, value), path in rd_dirs.items():
        state = json.loads((path / "train_state.json").read_text())
        row = {**code_size(path), "bleu": heldout_bleu(path, bleu_texts), "train_minutes": round(state["elapsed_s"] / 60, 2),
               "steps": state["step"]}
        if code_size(path) == code_size(init) and family == "ae":
            row["note"] = "the foundation AE's own shape: every weight is copied, so this row continues its training"
        rate_distortion[family].append(row)
    if earlier is None:
        rate_distortion["ae_pca"] = pca_rows(init, list(splits["train"].select(range(5000))["text"]), bleu_texts)
        rate_distortion["foundation_ae"] = {**code_size(init), "bleu": heldout_bleu(init, bleu_texts)}

    result = {
        "recommended": "rae",
        "recommended_model": rec,
        "rate_distortion": rate_distortion,
        "peer_lm": peer_info,
        "train_commands": {k: " ".join(v) for k, v in commands.items()},
        "heldout": "news validation sentences: 1,000 MAUVE references, then 2,000 for BLEU (first 1,000), interpolation "
                   "pairs, paraphrase (first 500) and health",
        "device": device_name(),
        "foundation_ae": {**code_size(init), "bleu": heldout_bleu(init, bleu_texts)},
        "rate_distortion_source": "this run" if earlier is None else
        earlier.get("rate_distortion_source", f"{earlier['command']} on {earlier['device']}"),
        "command": f"python benchmarks/generative.py --init-from {init} --minutes {args.minutes} --rd-steps {args.rd_steps}"
                   + (f" --steps {args.steps}" if args.steps else "")
                   + (f" --rate-distortion-from {args.rate_distortion_from}" if earlier is not None else ""),
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "generative.json").write_text(json.dumps(result, indent=2) + "\n")
    plot(rate_distortion, RESULTS / "generative_rate_distortion.png")
    report(result)


def plot(rate_distortion: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    for family, rows in rate_distortion.items():
        if not isinstance(rows, list):
            continue
        x = [r.get("code_floats", r.get("code_bits", 0) / 32) for r in rows]
        order = np.argsort(x)
        label = {"vq": "vq (bits / 32)", "ae_pca": "PCA of the foundation AE's code"}.get(family, family)
        ax.plot(np.array(x)[order], np.array([r["bleu"] for r in rows])[order], marker="o", label=label)
    ax.set_xscale("log", base=2)
    ax.set_xlabel("code size per sentence (floats; VQ: bits / 32)")
    ax.set_ylabel("held-out BLEU")
    ax.set_title("Rate–distortion on news, fixed training budget")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def report(result: dict) -> None:
    rec = result["recommended_model"]
    print(f"\nrecommended: rae ({rec['prior']} prior), {rec['code_floats']} floats, BLEU {rec['bleu']}, "
          f"{rec['train_minutes']} min ({rec['autoencoder_minutes']} autoencoder + the prior)")
    print(f"{'':24} {'rae':>8} {'peer LM':>8} {'held-out':>8}")
    print(f"{'MAUVE':24} {rec['mauve']:8.3f} {rec['peer_lm_mauve']:8.3f} {rec['heldout_mauve']:8.3f}"
          f"   (a mixture prior on the same codes: {rec['mixture_prior_mauve']:.3f})")
    print(f"{'copy rate':24} {rec['copy_rate']:8.3f} {rec['peer_lm_copy_rate']:8.3f}")
    for name, label in (("mean", "nearest-train overlap"), ("share_at_least_half", "share overlapping >= half")):
        print(f"{label:24} {rec['nearest_training_overlap'][name]:8.3f} {rec['peer_lm_nearest_training_overlap'][name]:8.3f}"
              f" {rec['heldout_nearest_training_overlap'][name]:8.3f}")
    print(f"{'distinct-2':24} {rec['distinct2']:8.3f} {rec['peer_lm_distinct2']:8.3f} {rec['heldout_distinct2']:8.3f}")
    print(f"{'NLL under the peer':24} {rec['sample_nll']:8.3f} {rec['peer_lm_sample_nll_self_scored']:8.3f} {rec['heldout_nll']:8.3f}")
    print(f"MAUVE at prior temperature 0.7: {rec['mauve_prior_temperature_0.7']:.3f}; held-out codes + noise of "
          + ", ".join(f"{k} SD: {v:.3f}" for k, v in rec["decoder_noise_mauve"].items()))
    for row in rec["bandwidth_sweep"]:
        print(f"kde bandwidth {row['bandwidth']}: MAUVE {row['mauve']:.3f}, copy {row['copy_rate']:.3f}, "
              f"nearest-train overlap {row['nearest_training_overlap']['mean']:.3f}")
    print(f"interpolation: novel {rec['interpolation_novel_share']:.3f}, NLL ratio {rec['interpolation_nll_ratio']:.3f}"
          f" (straight path: {rec.get('interpolation_nll_ratio_straight_path', float('nan')):.3f})")
    for prefix in ("paraphrase", "paraphrase_code_ranked"):
        print(f"{prefix}: similarity {rec[prefix + '_similarity']:.3f}, self-BLEU {rec[prefix + '_self_bleu']:.1f}, "
              f"NLL ratio {rec[prefix + '_nll_ratio']:.3f}")
    print("health: " + ", ".join(f"{k} {rec[k]}" for k in ("active_share", "active_units", "mi", "kl") if k in rec))
    print("\nrate–distortion (held-out BLEU)")
    for family, rows in result["rate_distortion"].items():
        rows = rows if isinstance(rows, list) else [rows]
        print(f"  {family:14} " + "  ".join(f"{r.get('code_floats', r.get('code_bits'))}{'b' if 'code_bits' in r else 'f'}:"
                                            f"{r['bleu']:.1f}" for r in rows))
    print("\nsamples (rae | peer LM)")
    for a, b in zip(rec["sample_examples"], rec["peer_lm_sample_examples"]):
        print(f"  {a}\n    | {b}")
    print("\ninterpolations")
    for path in rec["interpolation_examples"]:
        print("  " + "\n  -> ".join(path) + "\n")
    print("paraphrases")
    for e in rec["paraphrase_examples"]:
        print(f"  {e['source']}\n    => {e['paraphrase']}")
    print(f"device {result['device']}")


if __name__ == "__main__":
    main()
