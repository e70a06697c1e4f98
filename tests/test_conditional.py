"""Issue 8: the conditional VAE (label-conditioned decoder, `textae transfer`) and the mixture-prior
VAE (`textae cluster`), from bottleneck maths to the CLI."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from click.testing import CliRunner

import textae
from textae.cli import cli
from textae.clustering import cluster, top_words
from textae.errors import TextAEError
from textae.latent import sample
from textae.modeling.bottlenecks import build_bottleneck
from textae.modeling.bottlenecks.cvae import UNKNOWN, label_ids
from textae.modeling.bottlenecks.gmvae import gaussian_pair_kl
from textae.modeling.bottlenecks.vae import free_bits_kl, gaussian_kl
from textae.modeling.bottlenecks.vq import kmeans
from textae.transfer import transfer

from .conftest import SENTENCES, STYLED, tiny_overrides

K, D = 2, 8

@pytest.fixture(scope="module")
def cvae(trained_model, styled_corpus):
    options = {"latent_dim": 8, "beta_steps": 100, "label_column": "style", "adversary_weight": 1.0}
    return trained_model("cvae", 300, options, corpus=styled_corpus, **{"train.eval_every": 300})


@pytest.fixture(scope="module")
def gmvae(trained_model):
    return trained_model("gmvae", 150, {"latent_dim": 8, "components": 3, "place_after": 50}, **{"train.eval_every": 150})


# ----- conditional VAE ----------------------------------------------------------------------
def test_label_ids_map_values_and_mark_unknown_ones():
    assert label_ids(["ham", "spam", None, "eggs", 1], ["ham", "spam", "1"]) == [0, 1, UNKNOWN, UNKNOWN, 2]


def test_cvae_code_is_content_plus_label_and_known_labels_are_one_hot():
    torch.manual_seed(0)
    b = build_bottleneck("cvae", K, D, {"latent_dim": 4, "labels": ["a", "b", "c"]}).train()
    h, mask = torch.randn(5, K, D), torch.ones(5, K, dtype=torch.bool)
    code = b.encode(h, mask)
    assert code.shape == (5, 7) and torch.allclose(code[:, 4:].sum(-1), torch.ones(5))  # q(y|x) when unknown
    assert torch.allclose(b.stored_code(code[:, :4], h, torch.tensor([2, -1, 0, 1, 2]))[0, 4:], torch.tensor([0.0, 0.0, 1.0]))
    moved = b.with_label(code, 1)
    assert torch.equal(moved[:, :4], code[:, :4]) and torch.equal(moved[:, 4:], torch.tensor([[0.0, 1.0, 0.0]] * 5))
    assert not torch.allclose(b.to_decoder(moved), b.to_decoder(b.with_label(code, 0)))  # the label reaches the decoder


def test_cvae_adversary_learns_the_label_while_the_leak_term_trains_only_the_encoder():
    torch.manual_seed(0)
    b = build_bottleneck("cvae", K, D, {"latent_dim": 4, "labels": ["a", "b"]}).train()
    h = torch.randn(6, K, D, requires_grad=True)
    out = b(h, torch.ones(6, K, dtype=torch.bool), torch.tensor([0, 1, 0, 1, -1, -1]))
    assert {"kl", "leak", "adversary", "label"} <= set(out.losses) and 0 <= out.losses["leak"] <= math.log(2)
    out.losses["leak"].backward(retain_graph=True)
    assert h.grad.abs().sum() > 0 and all(p.grad is None for p in b.adversary.parameters())
    h.grad = None
    out.losses["adversary"].backward()
    assert h.grad is None and all(p.grad is not None for p in b.adversary.parameters())


def test_the_label_changes_the_decoders_output_and_transfer_keeps_the_content(cvae):
    ae = textae.load(cvae)
    calm = [t for t, y in STYLED if y == "calm"]
    assert sum(r == t for r, t in zip(ae.reconstruct(calm), calm)) >= 6  # the model fits its data
    loud = transfer(ae, calm, "loud")
    assert loud != ae.reconstruct(calm)  # same content codes, other label, other text
    assert sum(t.endswith("!") for t in loud) >= 6, loud  # the style the label stands for
    kept = [t[:-2] == c[:-2] for t, c in zip(loud, calm)]
    assert sum(kept) >= 6, list(zip(calm, loud))  # the content is what the code says


def test_transfer_through_the_cli_keeps_ids_and_order_and_explains_bad_labels(cvae, tmp_path):
    src = tmp_path / "in.jsonl"
    src.write_text("".join(json.dumps({"id": f"r{i}", "text": t}) + "\n" for i, (t, _) in enumerate(STYLED[:4])))
    out, runner = tmp_path / "out.jsonl", CliRunner()
    res = runner.invoke(cli, ["transfer", "--model", str(cvae), "--input", str(src), "--to", "loud", "--output", str(out)])
    assert res.exit_code == 0, res.output
    rows = [json.loads(l) for l in out.read_text().splitlines()]
    assert [r["id"] for r in rows] == ["r0", "r1", "r2", "r3"] and [r["text"] for r in rows] == [t for t, _ in STYLED[:4]]
    assert [r["transferred"] for r in rows] == transfer(textae.load(cvae), [t for t, _ in STYLED[:4]], "loud")
    assert {r["label"] for r in rows} <= {"calm", "loud"}
    res = runner.invoke(cli, ["transfer", "--model", str(cvae), "--input", str(src), "--to", "angry", "--output", str(tmp_path / "angry.jsonl")])
    assert res.exit_code == 2 and "unknown label 'angry'; this model knows calm, loud" in res.output


def test_cvae_training_explains_a_missing_or_unusable_label_column(tmp_path, corpus, styled_corpus):
    def train_cvae(name: str, options: dict, data):
        overrides = {**tiny_overrides(data, tmp_path / name, **{"train.max_steps": 2}), "model.family": "cvae",
                     "model.bottleneck": options}
        textae.train(textae.load_config(overrides=overrides), progress=False)

    with pytest.raises(TextAEError, match="conditions on the column 'label'.*columns: text"):
        train_cvae("a", {}, corpus)
    with pytest.raises(TextAEError, match="holds 17 distinct value"):  # the text column is not a label
        train_cvae("b", {"label_column": "text"}, styled_corpus)


# ----- mixture prior --------------------------------------------------------------------------
def test_gmvae_responsibilities_sum_to_one_and_separate_two_blobs():
    torch.manual_seed(0)
    b = build_bottleneck("gmvae", K, D, {"latent_dim": 3, "components": 2}).train()
    blobs = torch.cat([torch.randn(50, 3) * 0.1 + 4, torch.randn(50, 3) * 0.1 - 4])
    b._initialise_mixture(blobs)
    r = b.responsibilities(blobs)
    assert r.shape == (100, 2) and torch.allclose(r.sum(-1), torch.ones(100))
    picks = r.argmax(-1)
    assert picks[:50].unique().numel() == 1 and picks[50:].unique().numel() == 1 and picks[0] != picks[-1]
    for _ in range(300):  # the components follow the data (online EM)
        b._update_mixture(blobs + 1.0, torch.full((100, 3), -9.0))
    assert torch.allclose(b.means.sort(0).values, torch.tensor([[-3.0] * 3, [5.0] * 3]), atol=0.1)


class _Words:
    """A stand-in tokenizer for the semantic term: ids are word indices of a fixed vocabulary (0 = padding)."""

    vocab = ["<pad>", "cat", "dog", "market", "dollars", "sat", "ran", "closed", "paid"]

    def batch_decode(self, ids, skip_special_tokens=True):
        return [" ".join(self.vocab[i] for i in list(row) if i) for row in ids]


class _Topic:
    """A stand-in sentence encoder: animals and money point two orthogonal ways."""

    def __init__(self):
        self.seen: list[str] = []

    def encode(self, texts):
        self.seen += texts
        out = np.zeros((len(texts), 384), np.float32)
        for i, t in enumerate(texts):
            out[i, 0 if ("cat" in t or "dog" in t) else 1] = 1.0
        return out


def test_gmvae_semantic_term_teaches_mu_the_sentence_encoders_geometry_in_training_only():
    torch.manual_seed(0)
    plain = build_bottleneck("gmvae", K, D, {"latent_dim": 3, "components": 2}).train()
    assert plain.semantic_head is None and "semantic" not in plain(torch.randn(4, K, D), torch.ones(4, K, dtype=torch.bool)).losses
    b = build_bottleneck("gmvae", K, D, {"latent_dim": 3, "components": 2, "semantic_weight": 2.0}).train()
    b.sentence_encoder = teacher = _Topic()
    b.set_vocabulary(_Words())
    ids = torch.tensor([[1, 5], [2, 6], [3, 7], [4, 8]] * 4)  # animals, animals, money, money, ...
    h = torch.randn(16, K, D) + torch.tensor([1.0, 1.0, -1.0, -1.0] * 4)[:, None, None]  # the encoder tells them apart
    h.requires_grad_(True)
    mask = torch.ones(16, K, dtype=torch.bool)
    b.content_input(torch.full_like(ids, 3), mask)  # the encoder reads noised text: only the clean targets count
    b.read_targets(torch.cat([ids, torch.full((16, 1), -100)], 1))
    out = b(h, mask)
    target = torch.as_tensor(_Topic().encode(_Words().batch_decode(ids)))
    expected = 2.0 * (1 - torch.cosine_similarity(b.semantic_head(out.latent["mu"]), target, dim=-1)).mean()
    assert torch.allclose(out.losses["semantic"], expected) and "semantic" not in out.per_sentence
    out.losses["semantic"].backward()
    assert h.grad.abs().sum() > 0 and b.semantic_head.weight.grad.abs().sum() > 0  # the encoder learns, not just the head
    optimiser = torch.optim.Adam(b.parameters(), 0.05)
    for _ in range(100):
        b.read_targets(ids)
        loss = b(h.detach(), mask).losses["semantic"]
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    assert loss < 0.2  # mu now carries the encoder's geometry
    assert sorted(teacher.seen) == ["cat sat", "dog ran", "dollars paid", "market closed"]  # each embedded once
    with torch.no_grad():
        assert "semantic" not in b.eval()(h, mask).losses  # encoding never reads the sentence encoder


def test_a_semantic_gmvae_trains_through_the_model_and_clusters_without_the_sentence_encoder(tmp_path, monkeypatch):
    import textae.similarity as similarity

    class Topic(_Topic):
        def __init__(self, *args, **kwargs):
            super().__init__()

    def unavailable(*args, **kwargs):
        raise AssertionError("the sentence encoder was asked for")

    monkeypatch.setattr(similarity, "minilm_dir", lambda advice="": tmp_path)
    monkeypatch.setattr(similarity, "SentenceEncoder", Topic)
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n".join(SENTENCES) + "\n")
    values = {**tiny_overrides(corpus, tmp_path / "run", **{"train.max_steps": 40, "train.log_every": 10}),
              "model.family": "gmvae", "model.bottleneck": {"latent_dim": 8, "components": 2, "semantic_weight": 1.0}}
    final = textae.train(textae.load_config(overrides=values), progress=False)
    events = [json.loads(l) for l in (final.parent / "metrics.jsonl").read_text().splitlines()]
    semantic = [e["semantic"] for e in events if "semantic" in e]
    assert len(semantic) >= 3 and semantic[-1] < 0.2 < semantic[0]  # the term reaches the training loss and is learned
    placed = [e["mixture_placed_on"] for e in events if "mixture_placed_on" in e]
    assert len(placed) == 1 and 0 < placed[0] <= len(SENTENCES)  # shorter than place_after: the mixture is placed on training codes afterwards
    monkeypatch.setattr(similarity, "minilm_dir", unavailable)
    monkeypatch.setattr(similarity, "SentenceEncoder", unavailable)
    ae = textae.load(final)
    assert ae.model.bottleneck.semantic_head is not None  # saved and loaded with the model
    assert bool(ae.model.bottleneck.mixture_initialised)
    probs = cluster(ae, SENTENCES)
    assert probs.shape == (len(SENTENCES), 2)


def test_gmvae_places_its_mixture_after_the_warm_up_on_the_latest_codes():
    torch.manual_seed(0)
    b = build_bottleneck("gmvae", K, D, {"latent_dim": 2, "components": 2, "place_after": 3, "place_rows": 8}).train()
    logvar = torch.full((4, 2), -4.0)
    far, near = torch.tensor([[100.0, 100.0], [-100.0, -100.0]]), torch.tensor([[4.0, 4.0], [-4.0, -4.0]])
    with pytest.raises(RuntimeError, match="not placed yet"):
        b.responsibilities(near)
    assert set(b.prior_metrics(near, logvar[:2])) == {"kl"}  # evaluated in the warm-up: the VAE's figures
    for step in range(4):  # the first two batches are the warm-up's old codes, which must be forgotten
        b.set_step(step)
        mu = (far.repeat(2, 1) if step < 2 else near[step - 2].repeat(4, 1)) + 0.1 * torch.randn(4, 2)
        losses, _ = b.kl_terms(mu, logvar, mu, 1.0)
        if step < 3:  # until place_after, the plain VAE's prior N(0, I)
            assert not bool(b.mixture_initialised)
            assert torch.allclose(losses["kl"], free_bits_kl(gaussian_kl(mu, logvar), 0.5))
    assert bool(b.mixture_initialised) and b.prior_sentences == 0
    assert torch.allclose(b.means.sort(0).values, near.sort(0).values, atol=0.5)  # on the last 8 rows: both batches
    resumed = build_bottleneck("gmvae", K, D, {"latent_dim": 2, "components": 2, "place_after": 3, "place_rows": 8}).train()
    resumed.set_step(5)  # resumed past the warm-up: the codes it held were not checkpointed
    resumed.kl_terms(near.repeat(2, 1), logvar, near.repeat(2, 1), 1.0)
    assert not bool(resumed.mixture_initialised)  # 4 codes are not place_rows: it collects more first
    resumed.kl_terms(near.repeat(2, 1), logvar, near.repeat(2, 1), 1.0)
    assert bool(resumed.mixture_initialised)
    centres = torch.tensor([[5.0, 5.0], [-5.0, 5.0], [5.0, -5.0], [-5.0, -5.0], [0.0, 12.0], [12.0, 0.0]])
    blobs = (torch.randn(6, 25, 2) * 0.1 + centres[:, None]).flatten(0, 1)
    b = build_bottleneck("gmvae", K, D, {"latent_dim": 2, "components": 6})

    def one_blob_each(picks: torch.Tensor) -> bool:
        picks = picks.view(6, 25)
        return bool((picks == picks[:, :1]).all()) and picks[:, 0].unique().numel() == 6

    first, _ = kmeans(blobs, 6, 20, torch.Generator().manual_seed(0))
    assert not one_blob_each(torch.cdist(blobs, first).argmin(-1))  # the first k-means run alone splits a blob
    b._initialise_mixture(blobs)
    assert one_blob_each(b.responsibilities(blobs).argmax(-1))  # the tightest of the runs


def test_gmvae_kl_term_matches_closed_form_and_restarts_dead_components():
    mu, logvar = torch.tensor([[0.5, -1.0]]), torch.tensor([[-1.0, 0.2]])
    means, logvars = torch.tensor([[1.0, 0.0]]), torch.tensor([[0.3, -0.4]])
    expected = torch.distributions.kl_divergence(
        torch.distributions.Normal(mu, (0.5 * logvar).exp()), torch.distributions.Normal(means, (0.5 * logvars).exp()))
    assert torch.allclose(gaussian_pair_kl(mu, logvar, means, logvars)[:, 0], expected, atol=1e-6)
    b = build_bottleneck("gmvae", K, D, {"latent_dim": 3, "components": 4}).train()
    data = torch.randn(64, 3)
    b._initialise_mixture(data)
    b.means[3] = 1e3  # far from everything: no sentence will pick it
    for _ in range(400):
        b._update_mixture(data, torch.zeros(64, 3))
    assert b.means.abs().max() < 10 and (b.responsibilities(data).argmax(-1).bincount(minlength=4) > 0).sum() >= 3


def test_gmvae_perturbs_in_component_spreads_scores_its_own_kl_and_places_a_mixture_of_other_sizes_afresh():
    torch.manual_seed(0)
    b = build_bottleneck("gmvae", K, D, {"latent_dim": 3, "components": 2}).train()
    blobs = torch.cat([torch.randn(50, 3) * 0.1 + 4, torch.randn(50, 3) * 0.1 - 4])
    b._initialise_mixture(blobs)
    moved = b.perturb(torch.zeros(4000, 3), 1.0, torch.Generator().manual_seed(0)).std(0)
    assert torch.allclose(moved, (0.5 * b.logvar_shared).exp(), rtol=0.06)  # about 0.1 here, not the N(0, I) prior's 1
    b.eval()
    h = torch.randn(4, K, D)
    mu, logvar = b.posterior(h)
    r = b.responsibilities(mu)
    expected = (r[..., None] * gaussian_pair_kl(mu, logvar, b.means, b.logvars)).sum((1, 2)) \
        + (r * (r.clamp(min=1e-12).log() + math.log(2))).sum(-1)
    assert torch.allclose(b.prior_kl(h), expected, atol=1e-5)  # the scorers' `kl`: to the mixture, not to N(0, I)
    other = build_bottleneck("gmvae", K, D, {"latent_dim": 3, "components": 4})
    shared = {k: v for k, v in b.state_dict().items() if other.state_dict()[k].shape == v.shape}
    other.load_state_dict(shared, strict=False)  # as --init-from copies: the flag matches, the components do not
    assert bool(b.mixture_initialised) and not bool(other.mixture_initialised)
    same = build_bottleneck("gmvae", K, D, {"latent_dim": 3, "components": 2})
    same.load_state_dict(b.state_dict())
    assert bool(same.mixture_initialised) and torch.equal(same.means, b.means)


@pytest.mark.parametrize("family, small, big", [("vae", {"latent_dim": 3}, {"latent_dim": 4}),
                                                ("vq", {"codebook_size": 4}, {"codebook_size": 8}),
                                                ("rae", {"latent_dim": 3}, {"latent_dim": 4})])
def test_init_from_a_code_of_other_sizes_places_it_again(family, small, big):
    source = build_bottleneck(family, K, D, small)
    source.initialised.fill_(True)
    other = build_bottleneck(family, K, D, big)
    shared = {k: v for k, v in source.state_dict().items() if other.state_dict()[k].shape == v.shape}
    other.load_state_dict(shared, strict=False)  # as --init-from copies: the flag matches, what it placed does not
    assert not bool(other.initialised)
    same = build_bottleneck(family, K, D, small)
    same.load_state_dict(source.state_dict())
    assert bool(same.initialised)


def test_cluster_through_the_cli_writes_rows_in_order_and_top_words(gmvae, tmp_path):
    src = tmp_path / "in.csv"
    src.write_text("id,text\n" + "".join(f"k{i},{s}\n" for i, s in enumerate(SENTENCES)))
    out, runner = tmp_path / "clusters.jsonl", CliRunner()
    res = runner.invoke(cli, ["cluster", "--model", str(gmvae), "--input", str(src), "--output", str(out)])
    assert res.exit_code == 0, res.output
    rows = [json.loads(l) for l in out.read_text().splitlines()]
    assert [r["id"] for r in rows] == [f"k{i}" for i in range(len(SENTENCES))]
    assert all(0 <= r["cluster"] < 3 and 1 / 3 - 1e-6 <= r["probability"] <= 1 for r in rows)
    summary = json.loads((tmp_path / "clusters.clusters.json").read_text())
    assert sum(v["size"] for v in summary.values()) == len(SENTENCES)
    assert set(summary) == {str(r["cluster"]) for r in rows}
    res = runner.invoke(cli, ["cluster", "--model", str(gmvae), "--input", str(src), "--output", str(tmp_path / "c.txt")])
    assert res.exit_code == 2 and ".jsonl, .csv or .parquet" in res.output


def test_each_verb_refuses_the_wrong_family(gmvae, cvae, tmp_path):
    src = tmp_path / "in.txt"
    src.write_text("hello there\n")
    runner = CliRunner()
    res = runner.invoke(cli, ["transfer", "--model", str(gmvae), "--input", str(src), "--to", "x", "--output", str(tmp_path / "o.jsonl")])
    assert res.exit_code == 2 and "--family cvae" in res.output
    res = runner.invoke(cli, ["cluster", "--model", str(cvae), "--input", str(src), "--output", str(tmp_path / "o.jsonl")])
    assert res.exit_code == 2 and "--family gmvae" in res.output


def test_gmvae_model_samples_and_logs_cluster_usage(gmvae):
    ae = textae.load(gmvae)
    assert len(sample(ae, 3)) == 3
    events = [json.loads(l) for l in (gmvae.parent / "metrics.jsonl").read_text().splitlines()]
    assert {"kl", "cluster_perplexity", "active_units", "mi"} <= set().union(*events)


def test_top_words_pick_each_clusters_own_words():
    texts = ["stocks fell sharply", "stocks rose", "markets and stocks", "the cat purred", "a cat slept", "cat food"]
    words = top_words(texts, np.array([0, 0, 0, 1, 1, 1]), n=2)
    assert words[0][0] == "stocks" and words[1][0] == "cat"
    assert top_words(["the", "a"], np.array([0, 1])) == {0: [], 1: []}  # only stop words: nothing to list
