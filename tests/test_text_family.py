"""The text family: word selection maths, the critic's gradient penalty, gradients through the
discrete middle text, the length budget, and `summarize` / `encode` / `decode` end to end."""

from __future__ import annotations

import itertools
import json
import math

import pytest
import torch
from click.testing import CliRunner

import textae
from textae.cli import cli
from textae.modeling import TextAEConfig, TextCodeModel
from textae.modeling.text.critic import gradient_penalty
from textae.modeling.text.salience import first_order_drops, word_salience
from textae.modeling.text.select import (
    NEG, best_subsequence, budgets, compact, relaxed_top_k, sample_without_replacement, top_k_mask, window_mask,
)

from .conftest import SENTENCES, tiny_overrides

# No sentence encoder in the unit tests: the similarity and salience tests pass a small one.
TEXT = {"max_words": 3, "ratio": 0.5, "critic_dim": 16, "lm_dim": 16, "lm_layers": 1, "prior_weight": 0.5, "similarity_weight": 0.0, "salience_weight": 0.0}


# ----- selection maths ---------------------------------------------------------------------
def test_budget_is_the_smaller_of_words_and_ratio_and_at_least_one():
    assert budgets(torch.tensor([24, 6, 1, 0]), max_words=10, ratio=0.5).tolist() == [10, 3, 1, 1]


def test_sample_log_probability_is_plackett_luce():
    logits = torch.tensor([[0.5, -1.0, 2.0, NEG]])
    mask, logp = sample_without_replacement(logits, torch.tensor([2]), torch.Generator().manual_seed(0))
    assert mask.sum() == 2 and not mask[0, 3]
    # The probability of the chosen set, summed over both orders of drawing it.
    chosen = mask[0].nonzero().flatten().tolist()
    w = logits[0, :3].exp()
    p_set = sum(w[a] / w.sum() * w[b] / (w.sum() - w[a]) for a, b in itertools.permutations(chosen))
    first_order = [(a, b) for a, b in itertools.permutations(chosen)]
    p_orders = [float(w[a] / w.sum() * w[b] / (w.sum() - w[a])) for a, b in first_order]
    assert any(math.isclose(math.exp(float(logp)), p, rel_tol=1e-5) for p in p_orders)
    assert math.exp(float(logp)) < float(p_set)


def test_relaxed_top_k_is_hard_forward_and_reaches_every_logit():
    logits = torch.tensor([[1.0, 0.2, -0.5, 0.8, NEG]], requires_grad=True)
    hard, gates = relaxed_top_k(logits, torch.tensor([2]), 0.5, torch.Generator().manual_seed(1))
    assert torch.allclose(gates.detach(), hard.float(), atol=1e-6) and hard.sum() == 2
    (gates * torch.tensor([[1.0, 2.0, 3.0, 4.0, 5.0]])).sum().backward()
    assert (logits.grad[0, :4] != 0).all()  # dropped words are pushed too, not only the kept ones


def test_compact_keeps_order_and_window_is_contiguous():
    ids = torch.tensor([[5, 6, 7, 8, 9, 0]])
    keep = torch.tensor([[False, True, False, True, True, False]])
    middle, mask, _ = compact(ids, keep, pad_id=0)
    assert middle.tolist() == [[6, 8, 9]] and mask.all()
    starts = torch.tensor([[True] * 5 + [False]])
    window = window_mask(starts, torch.tensor([3]), torch.Generator().manual_seed(0))[0].tolist()
    first = window.index(True)
    assert window[first : first + 3] == [True] * 3 and sum(window) == 3


def _brute_force_best(unary, start, pair, k):
    """The best k-subset of the valid positions by enumeration: the reference for best_subsequence."""
    valid = [j for j in range(len(unary)) if unary[j] > NEG / 2]
    total = lambda c: sum(unary[j] for j in c) + start[c[0]] + sum(pair[i, j] for i, j in zip(c, c[1:]))
    return set(max(itertools.combinations(valid, k), key=total))


def test_best_subsequence_is_exact_and_without_junction_scores_is_top_k():
    generator = torch.Generator().manual_seed(0)
    unary = torch.randn(6, 7, generator=generator)
    unary[:, 0] = NEG  # a position no word starts at
    unary[2, 4:] = NEG
    start, pair = torch.randn(6, 7, generator=generator), torch.randn(6, 7, 7, generator=generator)
    k = torch.tensor([1, 2, 3, 3, 5, 6])
    mask = best_subsequence(unary, start, pair, k)
    for b in range(6):
        assert set(mask[b].nonzero().squeeze(1).tolist()) == _brute_force_best(unary[b], start[b], pair[b], int(k[b]))
    plain = best_subsequence(unary, torch.zeros_like(start), torch.zeros_like(pair), k)
    assert torch.equal(plain, top_k_mask(unary, k))


def test_gradient_penalty_of_a_linear_critic():
    class Linear(torch.nn.Module):  # D(x) = <w, x>: its gradient is w everywhere, of norm 3
        def __init__(self):
            super().__init__()
            self.w = torch.nn.Parameter(torch.full((2, 4), 3.0 / math.sqrt(8)))

        def forward(self, x, mask):
            return (x * self.w).sum((1, 2))

    real, fake = torch.randn(5, 2, 4), torch.randn(5, 2, 4)
    gp = gradient_penalty(Linear(), real, fake, torch.ones(5, 2, dtype=torch.bool))
    assert math.isclose(float(gp.detach()), (3.0 - 1.0) ** 2, rel_tol=1e-5)
    gp.backward()  # the penalty trains the critic: it needs a second derivative


# ----- the model ---------------------------------------------------------------------------
def _tiny_model(**options) -> TextCodeModel:
    torch.manual_seed(0)
    cfg = TextAEConfig(vocab_size=50, d_model=32, n_heads=2, encoder_layers=1, decoder_layers=1, ffn_dim=64,
                       max_positions=16, num_codes=4, code_dim=8, family="text", bottleneck={**TEXT, **options})
    model = TextCodeModel(cfg)
    model.word_start[:] = True
    return model.train()


def _batch() -> dict[str, torch.Tensor]:
    labels = torch.randint(5, 50, (4, 9))
    labels[:, -1] = 3  # EOS
    labels[0, 6:] = -100
    return {"input_ids": labels.clamp(min=0), "labels": labels}


@pytest.mark.parametrize("estimator", ["reinforce", "gumbel"])
def test_gradients_reach_the_compressor_through_the_middle_text(estimator):
    model = _tiny_model(estimator=estimator)
    out = model(**_batch())
    assert "reconstruction" in out.losses
    assert ("policy" in out.losses) == (estimator == "reinforce")
    # The critic's and the prior's own terms come apart from the model's loss, which holds none of them.
    assert set(out.adversary_losses) == {"critic", "gradient_penalty", "prior_lm"}
    assert not set(out.adversary_losses) & set(out.losses)
    assert torch.allclose(out.loss, sum(out.losses.values())) and torch.allclose(out.adversary_loss, sum(out.adversary_losses.values()))
    out.loss.backward()
    assert model.keep_head.weight.grad.abs().sum() > 0 and model.encoder[0].attn.qkv.weight.grad.abs().sum() > 0
    # The compressor's terms never train the critic or the prior: those have their own optimiser.
    adversary = [p for group in model.adversary_parameter_groups() for p in group["params"]]
    assert adversary and all(p.grad is None or p.grad.abs().sum() == 0 for p in adversary)


def test_junction_costs_turn_scattered_keywords_into_phrases(monkeypatch):
    """Keep scores that favour words 1, 4 and 6 give those words without junction costs; a high
    cost per break keeps the best 3-word phrase instead; an LM that only believes the source's own
    order (the token at position t follows a context of t tokens) keeps the sentence's lead.
    Multi-token words stay whole."""
    model = _tiny_model(max_words=3, ratio=1.0).eval()
    model.word_start[40:] = False  # ids 40.. continue the word before them
    ids = torch.tensor([[10, 41, 11, 12, 42, 43, 13, 14, 15, 3, 0]])  # words: 10+41, 11, 12+42+43, 13, 14, 15; EOS; pad
    positions = torch.arange(ids.shape[1])
    in_order = lambda src, needed=None: torch.where(positions[None, :, None] == positions[None, None, :], 0.0, -10.0).expand(len(src), -1, -1)
    monkeypatch.setattr(model.prior, "transitions", in_order)
    scattered = torch.full(ids.shape, -5.0)
    scattered[0, [0, 6, 8]] = 5.0
    monkeypatch.setattr(model, "word_logits", lambda src, starts, attention_mask=None: scattered.masked_fill(~starts, NEG))
    keywords, phrase, lead = [[10, 41, 13, 15]], [[13, 14, 15]], [[10, 41, 11, 12, 42, 43]]
    assert model.compress(ids, phrase_weight=0.0, fluency_weight=0.0).tolist() == keywords
    assert model.compress(ids, phrase_weight=0.01, fluency_weight=0.0).tolist() == keywords
    assert model.compress(ids, phrase_weight=100.0, fluency_weight=0.0).tolist() == phrase
    assert model.compress(ids, phrase_weight=0.0, fluency_weight=100.0).tolist() == lead
    no_lm = _tiny_model(prior_weight=0.0, fluency_weight=0.0).eval()
    assert no_lm.prior is None and no_lm.compress(ids, phrase_weight=1.0).shape[0] == 1
    with pytest.raises(ValueError, match="no corpus LM"):
        no_lm.compress(ids, fluency_weight=1.0)


def test_random_steps_leave_the_compressor_untrained():
    model = _tiny_model(random_steps=10, adversarial_weight=0.0, prior_weight=0.0)
    out = model(**_batch())
    assert set(out.losses) == {"reconstruction"}
    out.loss.backward()
    assert model.keep_head.weight.grad is None


class _Ids:
    """Decodes ids to their numbers as words (special ids < 5 dropped), like a tokenizer would to text."""

    def batch_decode(self, ids, skip_special_tokens=True):
        return [" ".join(str(i) for i in list(map(int, row)) if i >= 5) for row in ids]


class _Keyword:
    """A sentence encoder that only sees whether the text holds word 7: [has 7, 1], unit length;
    its token states are one [is 7, 1] per word."""

    def encode(self, texts):
        vectors = torch.tensor([[float("7" in t.split()), 1.0] for t in texts])
        return torch.nn.functional.normalize(vectors, dim=-1).numpy()

    def token_states(self, texts):
        return [(torch.tensor([[float(w == "7"), 1.0] for w in words]), torch.arange(len(words))) for words in texts]


def _sevens(generator: torch.Generator) -> torch.Tensor:
    """32 sentences of 8 words and EOS, each holding word 7 once, at a random place."""
    labels = torch.randint(8, 50, (32, 9), generator=generator)
    labels[torch.arange(32), torch.randint(0, 8, (32,), generator=generator)] = 7
    labels[:, -1] = 3
    return labels


def _learns_to_keep_seven(term: str, **options) -> tuple[float, float]:
    """The share of sentences whose one kept word is 7, before and after 40 steps with `options`."""
    model = _tiny_model(max_words=1, adversarial_weight=0.0, prior_weight=0.0, **options)
    model.tokenizer, model.sentence_encoder = _Ids(), _Keyword()
    generator = torch.Generator().manual_seed(0)
    keeps_seven = lambda: float(model.compress(_sevens(generator)).eq(7).any(1).float().mean())
    before = keeps_seven()
    optimiser = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(40):
        labels = _sevens(generator)
        out = model(input_ids=labels, labels=labels)
        assert term in {**out.stats, **out.losses}
        optimiser.zero_grad()
        out.loss.backward()
        optimiser.step()
    return before, keeps_seven()


def test_similarity_reward_teaches_the_compressor_to_keep_what_the_encoder_values():
    before, after = _learns_to_keep_seven("similarity", similarity_weight=10.0)
    assert before < 0.4 and after > 0.9, (before, after)


def test_first_order_drop_is_the_cosine_without_the_words_tokens():
    g = torch.Generator().manual_seed(0)
    states = torch.randn(7, 5, generator=g)
    word_of = torch.tensor([-1, 0, 0, 1, 2, 2, -1])  # [CLS], a word of two tokens, ..., [SEP]; word 3 was cut off
    drops = first_order_drops(states, word_of, 4)
    for w in range(3):
        rest = states[word_of.ne(w)].mean(0)
        expected = 1 - torch.nn.functional.cosine_similarity(rest, states.mean(0), dim=0)
        assert torch.allclose(drops[w], expected, atol=1e-6)
    assert drops[3].isnan()


def test_salience_is_measured_at_every_word_start_and_ranks_the_keyword_first():
    model = _tiny_model()
    model.tokenizer = _Ids()
    labels = _sevens(torch.Generator().manual_seed(0))
    starts, owner, selectable, _ = model._words(labels)
    salience = word_salience(labels, starts, owner, selectable, model._texts, _Keyword())
    assert (salience.isnan() == ~starts).all()  # measured at every word, and only there
    measured = salience.nan_to_num(-1.0)
    assert measured.argmax(1).tolist() == labels.eq(7).int().argmax(1).tolist()
    # Without word 7 the mean of the others is [0, 1] against [1/8, 1] for all eight words.
    assert torch.allclose(measured.max(1).values, torch.full((32,), 1 - 8 / 65**0.5))


def test_teacher_summary_keeps_the_most_salient_words_in_order():
    from textae.summaries import salience_summaries

    texts = ["1 2 7 3 4 5 6 8", "9 7", "9", ""]  # budgets (max 2 words, half the words): 2, 1, 1, 0
    out = salience_summaries(texts, _Keyword(), max_words=2)
    assert out[1:] == ["7", "9", ""]
    assert len(out[0].split()) == 2 and "7" in out[0].split()
    assert out[0].split() == [w for w in texts[0].split() if w in out[0].split()]  # sentence order


def test_salience_loss_teaches_the_compressor_the_salient_words():
    before, after = _learns_to_keep_seven("salience", salience_weight=10.0, salience_rows=16)
    assert before < 0.4 and after > 0.9, (before, after)


def test_similarity_needs_reinforce():
    with pytest.raises(ValueError, match="reinforce"):
        _tiny_model(estimator="gumbel", similarity_weight=1.0)


# ----- end to end --------------------------------------------------------------------------
@pytest.fixture(scope="module")
def text_model(trained_model):
    return trained_model("text", 30, TEXT, **{"train.eval_every": 30})


def test_training_logs_every_term_by_name(text_model):
    logged = set().union(*(json.loads(l) for l in (text_model.parent / "metrics.jsonl").read_text().splitlines()))
    assert {"reconstruction", "policy", "critic", "gradient_penalty", "prior_lm", "critic_gap", "reward",
            "middle_words", "eval_summary_words", "bleu"} <= logged


def test_summaries_are_in_order_within_budget_and_made_of_the_input_words(text_model):
    codec = textae.load(text_model)
    assert isinstance(codec, textae.TextCodec)
    texts = [*SENTENCES, "", "one"]
    summaries = codec.summarize(texts, max_words=2)
    assert len(summaries) == len(texts) and summaries[-2] == ""
    for text, summary in zip(texts, summaries):
        words = summary.split()
        assert len(words) <= 2 and len(words) <= max(1, math.ceil(0.5 * len(text.split())))
        rest = iter(text.split())
        assert all(any(w == x for x in rest) for w in words), (text, summary)  # a subsequence of the input
    assert all(len(s.split()) <= 3 for s in codec.summarize(SENTENCES))  # the model's own budget


def test_summarize_cli_passes_ids_through_in_input_order(text_model, tmp_path):
    src = tmp_path / "in.jsonl"
    rows = [{"id": f"r{i}", "text": t} for i, t in enumerate(reversed(SENTENCES))]
    src.write_text("".join(json.dumps(r) + "\n" for r in rows))
    result = CliRunner().invoke(cli, ["summarize", "--model", str(text_model), "--input", str(src),
                                      "--output", str(tmp_path / "out.jsonl"), "--max-words", "2"])
    assert result.exit_code == 0, result.output
    out = [json.loads(l) for l in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert [o["id"] for o in out] == [r["id"] for r in rows] and [o["text"] for o in out] == [r["text"] for r in rows]
    assert all(len(o["summary"].split()) <= 2 for o in out)


def test_encode_writes_middle_text_and_decode_expands_it(text_model, tmp_path):
    src = tmp_path / "in.txt"
    src.write_text("\n".join(SENTENCES[:3]) + "\n")
    runner = CliRunner()
    result = runner.invoke(cli, ["encode", "--model", str(text_model), "--input", str(src), "--output", str(tmp_path / "codes.jsonl")])
    assert result.exit_code == 0, result.output
    codes = [json.loads(l)["code"] for l in (tmp_path / "codes.jsonl").read_text().splitlines()]
    assert len(codes) == 3 and all(isinstance(c, str) and 1 <= len(c.split()) <= 3 for c in codes)
    result = runner.invoke(cli, ["decode", "--model", str(text_model), "--input", str(tmp_path / "codes.jsonl"),
                                 "--output", str(tmp_path / "back.jsonl")])
    assert result.exit_code == 0, result.output
    assert len((tmp_path / "back.jsonl").read_text().splitlines()) == 3


def test_bad_requests_give_one_line_errors(text_model, tmp_path, corpus):
    runner = CliRunner()
    src = tmp_path / "in.txt"
    src.write_text("a b c\n")
    result = runner.invoke(cli, ["summarize", "--model", str(text_model), "--input", str(src), "--output",
                                 str(tmp_path / "o.txt"), "--max-words", "0"])
    assert result.exit_code == 2 and "max-words" in result.output
    result = runner.invoke(cli, ["sample", "--model", str(text_model)])
    assert result.exit_code == 2 and "text-family" in result.output


def test_init_from_an_autoencoder_starts_compressor_and_reader_from_its_encoder(tmp_path):
    from textae.modeling import TextAEModel
    from textae.training.loop import _initialise_from

    sizes = dict(vocab_size=50, d_model=32, n_heads=2, encoder_layers=1, decoder_layers=1, ffn_dim=64, max_positions=16,
                 num_codes=4, code_dim=8)
    torch.manual_seed(1)
    TextAEModel(TextAEConfig(**sizes)).save_pretrained(tmp_path)
    ae = TextAEModel.from_pretrained(tmp_path)
    model = _tiny_model()
    _initialise_from(model, tmp_path)
    for name in ("encoder", "reader"):
        assert torch.equal(getattr(model, name)[0].attn.qkv.weight, ae.encoder[0].attn.qkv.weight)
    assert torch.equal(model.decoder[0].self_attn.qkv.weight, ae.decoder[0].self_attn.qkv.weight)


def test_a_killed_run_resumes_with_the_critic_optimiser(tmp_path, corpus):
    overrides = {**tiny_overrides(corpus, tmp_path / "run", **{"train.max_steps": 4, "train.save_every": 2}),
                 "model.family": "text", "model.bottleneck": TEXT}
    textae.train(textae.load_config(overrides=overrides), progress=False)
    textae.train(textae.load_config(overrides={**overrides, "train.max_steps": 6}), resume=True, progress=False)
    steps = [json.loads(l)["step"] for l in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert steps == sorted(steps) and steps[-1] == 6
    assert (tmp_path / "run" / "checkpoints" / "step-6" / "optimizer_1.bin").is_file()  # the critic's own state


def test_summary_metrics():
    from textae.summaries import attested_bigrams, lead, rouge

    assert lead(["a b c d", "x"], 2) == ["a b", "x"]
    assert attested_bigrams(["the cat sat", "cat the"], ["the cat sat on the mat"]) == pytest.approx(200 / 3)
    perfect, unrelated = rouge(["Cats sat on mats"], ["cat sits on the mat"]), rouge(["dogs bark"], ["cat sits on the mat"])
    assert perfect["rouge1"] > 50 and unrelated["rouge1"] == 0 and perfect["avg_words"] == 4


def test_train_from_the_text_config_on_a_local_corpus_then_summarize(corpus, tmp_path):
    """The README's recipe on the user's own file: `train --config configs/text.yaml --data FILE`,
    then `summarize`, with and without the fluency term (no sentence encoder in the unit tests)."""
    from pathlib import Path

    overrides = tiny_overrides(corpus, tmp_path / "ignored")
    skip = {"train.output_dir", "train.max_steps", "data.source", "noise.mask_rate"}
    sets = [a for k, v in overrides.items() if k not in skip for a in ("--set", f"{k}={'null' if v is None else v}")]
    sets += [a for option in ("similarity_weight=0", "salience_weight=0", "lm_dim=16", "critic_dim=16")
             for a in ("--set", f"model.bottleneck.{option}")]
    config = Path(__file__).resolve().parent.parent / "configs" / "text.yaml"
    runner = CliRunner()
    result = runner.invoke(cli, ["train", "--config", str(config), "--data", str(corpus), "--output", str(tmp_path / "run"),
                                 "--max-steps", "20", "--no-progress", *sets])
    assert result.exit_code == 0, result.output
    src = tmp_path / "in.txt"
    src.write_text("\n".join(SENTENCES) + "\n")
    for name, extra in (("phrases", []), ("keywords", ["--phrase-weight", "0", "--fluency-weight", "0"])):
        out = tmp_path / f"{name}.jsonl"
        result = runner.invoke(cli, ["summarize", "--model", str(tmp_path / "run" / "final"), "--input", str(src),
                                     "--output", str(out), *extra])
        assert result.exit_code == 0, result.output
        for row in map(json.loads, out.read_text().splitlines()):
            words, rest = row["summary"].split(), iter(row["text"].split())
            assert 1 <= len(words) <= 10 and all(any(w == x for x in rest) for w in words), row
    result = runner.invoke(cli, ["summarize", "--model", str(tmp_path / "run" / "final"), "--input", str(src),
                                 "--output", str(tmp_path / "bad.jsonl"), "--fluency-weight", "-1"])
    assert result.exit_code == 2 and "fluency-weight" in result.output and not (tmp_path / "bad.jsonl").exists()
