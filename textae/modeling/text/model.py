"""The text family: a compressor writes a few of the input's words, a reconstructor rebuilds the input.

Data flow for a batch of B sentences of T tokens (W words, k = budget words kept):
  compressor: tokens (B, T) → Transformer encoder (B, T, d) → one keep logit per word (B, T),
      scored at each word's first token → k words chosen → middle text (B, M), the kept tokens in order
  reconstructor: middle (B, M) → its own encoder (B, M, d) = memory → causal decoder that
      cross-attends to the memory → a copy / generate mixture (B, T, V) over the whole input
  readability: at summary time the words are the best k-word subsequence under the keep scores
      less its junction costs (exact dynamic programme, select.best_subsequence): phrase_weight
      per break between kept phrases, plus, with a corpus LM (fluency_weight > 0), the LM's
      surprise at each break. A WGAN-GP critic (runs of k consecutive real words) and the LM's
      NLL of the middle text can also reward the compressor in training.
  meaning: a frozen sentence encoder (all-MiniLM-L6-v2) adds the middle text's similarity to the
      input to the reward (REINFORCE), and teaches the keep scores its word salience (salience.py).

Why the sentence encoder: the reconstruction reward alone favours the words the reconstructor
cannot guess (names, numbers, rare words from the tail of a long sentence), whatever they say.
Trained on that reward alone, a compressor that had learned salience lost ROUGE on news lead →
title; with the similarity reward added it held its score (README, "Text family").

The middle text is discrete. REINFORCE (default) samples k words without replacement and uses the
greedy choice's reward as the baseline (self-critical); Gumbel uses a relaxed top-k whose gates
scale the middle tokens' embeddings (1 forward, soft gradient back).

Why a copy mechanism (See et al. 2017's pointer-generator): most of what the reconstructor writes
is the middle text's own words. Without it, the reconstructor spent its early training learning
to copy through cross-attention, and the compressor's reward was noise meanwhile.

Why extract words rather than generate from the whole vocabulary: a word-picking compressor is
readable and faithful from its first step, and trains in CPU minutes; unsupervised sentence
compression by word extraction is also the strongest known approach on Gigaword (Schumann et
al. 2020). The compressor's own choices are all it learns: which words, under a budget.

Why readability is a cost on junctions at summary time rather than a reward that trains the
keep scores: keep scores are one number per word, so the best-scored words land wherever the
salient words are, and a list of them reads like keywords; a critic's or an LM's reward on
sampled word sets left that unchanged. Readability is decided at the junctions between kept
words, so it is scored there, and the best subsequence under both is found exactly (Schumann et
al.'s objective of word salience + fluency, without their search).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call
from transformers import PreTrainedTokenizerBase

from ..config import TextAEConfig
from ..generation import DecoderMemory
from ..layers import EncoderLayer
from ..model import TextAEOutput
from ..pretrained import TextAEPreTrainedModel
from ..registry import register_family
from .config import TextConfig
from .critic import Critic, PriorLM, gradient_penalty
from .salience import salience_loss, word_salience
from .select import (
    NEG, best_subsequence, budgets, compact, relaxed_top_k, sample_without_replacement, start_of_token, top_k_mask,
    window_mask, word_starts,
)

CRITIC_BETAS = (0.5, 0.9)  # WGAN-GP's Adam betas for the critic
LM_BETAS = (0.9, 0.98)  # a language model's usual ones


def _frozen(module: nn.Module, *args: torch.Tensor) -> torch.Tensor:
    """Call `module` with its weights detached: the compressor's gradient may flow through the
    critic or prior to its inputs, but must not train them."""
    params = {name: p.detach() for name, p in module.named_parameters()}
    return functional_call(module, params, args)


class Words(NamedTuple):
    """Where the words of a batch of sentences (B, T) are."""

    starts: torch.Tensor  # (B, T) True at each word's first token
    owner: torch.Tensor  # (B, T) position of the word start each token belongs to
    selectable: torch.Tensor  # (B, T) real tokens other than EOS
    budget: torch.Tensor  # (B,) words the middle text keeps

    def tokens(self, word_mask: torch.Tensor) -> torch.Tensor:
        """A mask over word starts (B, T) → the mask of those words' tokens."""
        return word_mask.gather(1, self.owner) & self.selectable


@dataclass
class Picked:
    """The compressor's choice of words (B, T, at word starts) for one batch."""

    keep: torch.Tensor
    log_prob: torch.Tensor | None = None  # (B,) of a sampled choice (REINFORCE)
    baseline: torch.Tensor | None = None  # the greedy choice whose reward is the baseline (REINFORCE)
    gates: torch.Tensor | None = None  # (B, T) relaxed token gates (Gumbel), through which gradients flow


class TextCodeConfig(TextAEConfig):
    """The text family's sizes: those of `TextAEConfig`, with the options of `TextConfig` in `bottleneck`."""

    model_type = "textae_text"

    def __init__(self, family: str = "text", **kwargs: Any):
        super().__init__(family=family, **kwargs)


class TextCodeModel(TextAEPreTrainedModel):
    config_class = TextCodeConfig
    find_unused_parameters = True  # the compressor gets no gradient while `random_steps` run
    # --init-from a plain autoencoder: its encoder starts both the compressor and the reader.
    init_aliases = {"reader.": "encoder.", "reader_norm.": "encoder_norm."}

    def __init__(self, config: TextAEConfig):
        super().__init__(config)
        self.options = TextConfig(**config.bottleneck)
        d = config.d_model
        self._build_embeddings(config)
        layers = lambda n: nn.ModuleList(EncoderLayer(d, config.n_heads, config.ffn_dim, config.dropout) for _ in range(n))
        self.encoder, self.encoder_norm = layers(config.encoder_layers), nn.LayerNorm(d)
        self.keep_head = nn.Linear(d, 1)
        self.reader, self.reader_norm = layers(config.encoder_layers), nn.LayerNorm(d)
        self._build_decoder(config)
        self.copy_query, self.copy_key = nn.Linear(d, d), nn.Linear(d, d)
        self.copy_gate = nn.Linear(d, 1)  # probability of generating from the vocabulary rather than copying
        options = self.options
        self.critic = (
            Critic(config.vocab_size, config.max_positions, options.critic_dim, options.critic_layers)
            if options.adversarial_weight else None
        )
        self.prior = (
            PriorLM(config.vocab_size, config.max_positions, options.lm_dim, options.lm_layers, config.bos_token_id)
            if options.prior_weight or options.fluency_weight else None
        )
        # True for vocabulary entries that begin a word (SentencePiece "▁"); set from the tokenizer.
        self.register_buffer("word_start", torch.ones(config.vocab_size, dtype=torch.bool))
        # Only for the similarity and salience terms, which read text: set by set_vocabulary, and the encoder is
        # loaded on first use (anything with encode(texts) -> unit vectors; tests pass a small one).
        self.tokenizer: PreTrainedTokenizerBase | None = None
        self.sentence_encoder = None
        self.step = 0
        self.post_init()

    def set_vocabulary(self, tokenizer: PreTrainedTokenizerBase) -> None:
        """Learn which tokens start a word, so that whole words are kept or dropped."""
        pieces = tokenizer.convert_ids_to_tokens(list(range(self.config.vocab_size)))
        starts = [p is not None and p.startswith("▁") for p in pieces]
        self.word_start.copy_(torch.tensor(starts, dtype=torch.bool))
        self.tokenizer = tokenizer

    def adversary_parameter_groups(self) -> list[dict[str, Any]]:
        """The critic and the corpus LM: trained by their own Adam on `adversary_loss` only."""
        groups = []
        if self.critic is not None:
            groups.append({"params": list(self.critic.parameters()), "lr": self.options.critic_lr, "betas": CRITIC_BETAS})
        if self.prior is not None:
            groups.append({"params": list(self.prior.parameters()), "lr": self.options.lm_lr, "betas": LM_BETAS})
        return groups

    # ----- compressor ---------------------------------------------------------------------
    def _words(self, src: torch.Tensor, max_words: int | None = None, ratio: float | None = None) -> Words:
        selectable = src.ne(self.config.pad_token_id) & src.ne(self.config.eos_token_id)
        starts = word_starts(src, self.word_start, selectable)
        budget = budgets(starts.sum(1), max_words or self.options.max_words, ratio or self.options.ratio)
        return Words(starts, start_of_token(starts), selectable, budget)

    def word_logits(self, src: torch.Tensor, starts: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        """Keep logits (B, T) at word starts, NEG elsewhere."""
        if src.shape[1] > self.config.max_positions:
            raise ValueError(f"input has {src.shape[1]} tokens; this model takes at most {self.config.max_positions}")
        real = src.ne(self.config.pad_token_id) if attention_mask is None else attention_mask.bool()
        x = self.drop(self.embed_tokens(src) + self.embed_positions(torch.arange(src.shape[1], device=src.device)))
        for layer in self.encoder:
            x = layer(x, real[:, None, None, :])
        logits = self.keep_head(self.encoder_norm(x)).squeeze(-1).float()
        return logits.masked_fill(~starts, NEG)

    @torch.no_grad()
    def compress(self, input_ids: torch.Tensor, max_words: int | None = None, ratio: float | None = None,
                 fluency_weight: float | None = None, phrase_weight: float | None = None) -> torch.Tensor:
        """The middle text (B, M) of each sentence (B, T; content + EOS): the k words, in order, with
        the best keep scores less the summary's junction costs: `phrase_weight` for each break
        between kept phrases and `fluency_weight` times the corpus LM's surprise at each break
        (defaults: the model's; both 0 = the k best-scored words wherever they are)."""
        words = self._words(input_ids, max_words, ratio)
        logits = self.word_logits(input_ids, words.starts)
        fluency = self.options.fluency_weight if fluency_weight is None else fluency_weight
        phrase = self.options.phrase_weight if phrase_weight is None else phrase_weight
        if fluency and self.prior is None:
            raise ValueError("this model has no corpus LM to weigh fluency with (fluency_weight and prior_weight were 0 "
                             "in training)")
        if fluency or phrase:
            keep = self._fluent_words(input_ids, words, logits, fluency, phrase)
        else:
            keep = top_k_mask(logits, words.budget)
        return compact(input_ids, words.tokens(keep), self.config.pad_token_id)[0]

    def _fluent_words(self, ids: torch.Tensor, words: Words, logits: torch.Tensor, fluency: float,
                      phrase: float) -> torch.Tensor:
        """Best k-word subsequence (word-start mask, B, T) under keep logits minus junction costs.

        Keeping word j right after kept word i costs nothing when j follows i in the source (one
        phrase). A break costs `phrase` plus `fluency` times the corpus LM's surprise: how much less
        likely it finds word j after the source up to the end of word i than in j's own place,
        log p(w_j | source up to j) − log p(w_j | source up to word i). Measured against j's own
        place, so frequent words earn nothing by being common; a break that real text could also
        make costs little. The first kept word's surprise is measured after BOS alone, so a summary
        starts like a sentence."""
        t = ids.shape[1]
        pos = torch.arange(t, device=ids.device).expand_as(ids)
        boundary = words.starts | ~words.selectable
        # the context of a junction after word i ends where the next word (or EOS) begins
        after = torch.where(boundary, pos, torch.full_like(pos, t - 1)).flip(1).cummin(1).values.flip(1)
        after = torch.cat([after[:, 1:], torch.full_like(after[:, :1], t - 1)], 1)
        breaks = after[:, :, None] != pos[:, None, :]  # (B, i, j): j does not follow i in the source
        pair = -phrase * breaks.float()
        start = torch.zeros_like(logits)  # a summary may start anywhere: "On Tuesday," is worth dropping
        if fluency:
            # (B, T context lengths, T tokens); read only where a context ends at a word start or EOS
            trans = self.prior.transitions(ids, words.starts | ids.eq(self.config.eos_token_id))
            gain = trans - trans.diagonal(dim1=1, dim2=2)[:, None, :]  # minus the surprise: < 0 where j reads worse
            pair = pair + fluency * gain.gather(1, after[:, :, None].expand(-1, -1, t))
            start = start + fluency * gain[:, 0]
        return best_subsequence(logits, start, pair, words.budget)

    # ----- reconstructor ------------------------------------------------------------------
    def decoder_memory(self, code: torch.Tensor, gates: torch.Tensor | None = None) -> DecoderMemory:
        """Middle text (B, M) → per-layer cross-attention keys/values over the reader's states, and
        the copy source: keys (B, M, d), token ids (B, M) and mask (B, M). `gates` (B, M) scale the
        middle tokens' embeddings (the Gumbel estimator's relaxed choice)."""
        mask = code.ne(self.config.pad_token_id)
        x = self.embed_tokens(code)
        if gates is not None:
            x = x * gates[..., None].to(x.dtype)
        x = self.drop(x + self.embed_positions(torch.arange(code.shape[1], device=code.device)))
        for layer in self.reader:
            x = layer(x, mask[:, None, None, :])
        states = self.reader_norm(x)
        kvs = [layer.cross_attn.memory_kv(states, mask) for layer in self.decoder]
        return DecoderMemory(kvs, self.embed_positions.weight[None], source=(self.copy_key(states), code, mask))

    def output_logits(self, hidden: torch.Tensor, memory: DecoderMemory) -> torch.Tensor:
        """Log-probabilities (B, T, V) of generating or copying a middle-text token (normalised
        already, so they serve as logits everywhere)."""
        keys, ids, mask = memory.source
        scores = self.copy_query(hidden) @ keys.transpose(1, 2) / keys.shape[-1] ** 0.5  # (B, T, M)
        attn = scores.float().masked_fill(~mask[:, None, :], NEG).softmax(-1) * mask[:, None, :]
        copy = torch.zeros(*hidden.shape[:2], self.config.vocab_size, device=hidden.device, dtype=attn.dtype)
        copy = copy.scatter_add(2, ids[:, None, :].expand(-1, hidden.shape[1], -1), attn)
        generate = torch.sigmoid(self.copy_gate(hidden).float())  # (B, T, 1)
        return torch.log(generate * self.lm_head(hidden).float().softmax(-1) + (1 - generate) * copy + 1e-9)

    def greedy_tokens(self, hidden: torch.Tensor, memory: DecoderMemory) -> torch.Tensor:
        """argmax of `output_logits` for decoder states (B, d): the copy mixture needs all the logits."""
        return self.output_logits(hidden[:, None], memory)[:, 0].argmax(-1)

    def _reconstruct(self, middle: torch.Tensor, gates: torch.Tensor | None, labels: torch.Tensor,
                     decoder_input_ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Teacher-forced logits (B, T, V) and each sentence's mean token NLL (B,)."""
        memory = self.decoder_memory(middle, gates)
        hidden, _ = self.decoder_states(decoder_input_ids, 0, memory)
        logits = self.output_logits(hidden, memory)
        nll = F.cross_entropy(logits.flatten(0, 1).float(), labels.flatten(), reduction="none").view_as(labels)
        return logits, nll.sum(1) / labels.ne(-100).sum(1).clamp(min=1)

    # ----- training -----------------------------------------------------------------------
    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        decoder_input_ids: torch.Tensor | None = None,
        condition: torch.Tensor | None = None,
    ) -> TextAEOutput:
        """Compress `input_ids` (B, T; content + EOS, default: the clean sentence in `labels`) into a
        middle text and rebuild `labels` (B, T; -100 = ignore) from it; `code` is the middle text
        (B, M) the reconstructor read (the sample, when training with REINFORCE).

        Train the compressor on clean text (configs/text.yaml turns input noise off): the middle
        text is made of its words, so BERT-style masks would leak into it; word dropout on
        `decoder_input_ids` still applies. The critic's and the prior LM's own terms come back
        apart, in `adversary_loss`.
        """
        if labels is None:
            raise ValueError("the text family trains on labels (the clean sentence + EOS)")
        if condition is not None:
            raise ValueError("the text family reads no label; train a conditional family to condition on one")
        pad = self.config.pad_token_id
        src = labels.masked_fill(labels.eq(-100), pad) if input_ids is None else input_ids
        if decoder_input_ids is None:
            decoder_input_ids = self.shift_right(labels)
        words = self._words(src)
        logits = self.word_logits(src, words.starts, attention_mask)
        picked = self._pick_words(logits, words)
        middle, _, middle_gates = compact(src, words.tokens(picked.keep), pad, picked.gates)
        rows, row_labels, row_inputs = middle, labels, decoder_input_ids
        if picked.baseline is not None:  # one reconstructor pass over the sample and the greedy baseline
            baseline, _, _ = compact(src, words.tokens(picked.baseline), pad)
            width = max(middle.shape[1], baseline.shape[1])
            rows = torch.cat([F.pad(m, (0, width - m.shape[1]), value=pad) for m in (middle, baseline)])
            row_labels, row_inputs = labels.repeat(2, 1), decoder_input_ids.repeat(2, 1)
        out_logits, nll = self._reconstruct(rows, middle_gates, row_labels, row_inputs)
        losses = {"reconstruction": F.cross_entropy(out_logits.flatten(0, 1).float(), row_labels.flatten())}
        stats: dict[str, torch.Tensor] = {"middle_words": words.budget.float().mean()}
        if self.training and self.step >= self.options.random_steps:
            losses.update(self._compressor_terms(rows, middle_gates, src, nll, picked, stats))
        if self.training and self.options.salience_weight:
            losses["salience"] = self._salience_term(src, words, logits)
        adversary = self._adversary_losses(src, words, middle, stats) if self.training else {}
        return TextAEOutput(
            loss=sum(losses.values()), losses=losses, logits=out_logits[: len(middle)], code=middle, stats=stats,
            adversary_loss=sum(adversary.values()) if adversary else None, adversary_losses=adversary,
        )

    def _pick_words(self, logits: torch.Tensor, words: Words) -> Picked:
        """The compressor's words: the best ones in evaluation; in training, random ones while the
        reconstructor warms up (`random_steps`), then a sample (REINFORCE) or a relaxed top-k (Gumbel)."""
        if not self.training:
            return Picked(top_k_mask(logits, words.budget))
        if self.step < self.options.random_steps:
            return self._random_words(logits, words)
        if self.options.estimator == "reinforce":
            return self._sampled_words(logits, words)
        return self._relaxed_words(logits, words)

    def _random_words(self, logits: torch.Tensor, words: Words) -> Picked:
        keep, _ = sample_without_replacement(torch.zeros_like(logits).masked_fill(~words.starts, NEG), words.budget)
        return Picked(keep)

    def _sampled_words(self, logits: torch.Tensor, words: Words) -> Picked:
        keep, log_prob = sample_without_replacement(logits, words.budget)
        return Picked(keep, log_prob=log_prob, baseline=top_k_mask(logits, words.budget))

    def _relaxed_words(self, logits: torch.Tensor, words: Words) -> Picked:
        keep, word_gates = relaxed_top_k(logits, words.budget, self.options.gumbel_temperature)
        return Picked(keep, gates=word_gates.gather(1, words.owner))

    def _compressor_terms(self, rows: torch.Tensor, gates: torch.Tensor | None, src: torch.Tensor, nll: torch.Tensor,
                          picked: Picked, stats: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """What teaches the compressor: each middle text's quality (reconstruction, readability,
        similarity) as a REINFORCE reward, or, for Gumbel, readability as losses through the gates.
        `rows` holds the B middle texts (then, for REINFORCE, the B greedy baselines)."""
        options, batch = self.options, len(src)
        reinforce = picked.log_prob is not None
        losses = {}
        quality = -nll.detach()  # per row, higher = better
        if self.critic is not None:
            score = self._critic_score(rows, gates)
            stats["critic_score"] = score.detach()[:batch].mean()
            if not reinforce:
                losses["adversarial"] = -options.adversarial_weight * score.mean()
            quality = quality + options.adversarial_weight * score.detach()
        if self.prior is not None and options.prior_weight:
            prior_nll = _frozen(self.prior, rows, rows.ne(self.config.pad_token_id), gates)
            stats["prior_nll"] = prior_nll.detach()[:batch].mean()
            if not reinforce:
                losses["prior"] = options.prior_weight * prior_nll.mean()
            quality = quality - options.prior_weight * prior_nll.detach()
        if options.similarity_weight:
            similarity = self._similarity(rows, src)
            stats["similarity"] = similarity[:batch].mean()
            quality = quality + options.similarity_weight * similarity
        if reinforce:
            losses["policy"] = self._policy_loss(quality, picked.log_prob, stats)
        return losses

    @staticmethod
    def _policy_loss(quality: torch.Tensor, log_prob: torch.Tensor, stats: dict[str, torch.Tensor]) -> torch.Tensor:
        """Self-critical REINFORCE: the sample's quality minus its greedy baseline's, standardised."""
        sampled, baseline = quality.chunk(2)
        advantage = sampled - baseline
        stats["reward"], stats["advantage"] = sampled.mean(), advantage.mean()
        if len(advantage) > 1:
            advantage = advantage / advantage.std().clamp(min=1e-6)
        return -(advantage * log_prob).mean()

    def _salience_term(self, src: torch.Tensor, words: Words, logits: torch.Tensor) -> torch.Tensor:
        """The frozen sentence encoder's word salience, learned by the keep scores of the first rows."""
        rows = min(self.options.salience_rows, len(src))
        salience = word_salience(src[:rows], words.starts[:rows], words.owner[:rows], words.selectable[:rows],
                                 self._texts, self._sentence_encoder(src.device))
        return self.options.salience_weight * salience_loss(logits[:rows], salience)

    @torch.no_grad()
    def _similarity(self, rows: torch.Tensor, src: torch.Tensor) -> torch.Tensor:
        """Cosine similarity (R,) of each middle text in `rows` (R = a multiple of B) to its sentence
        in `src` (B, T), by the frozen sentence encoder; each sentence is encoded once."""
        encoder = self._sentence_encoder(rows.device)
        encode = lambda ids: torch.as_tensor(encoder.encode(self._texts(ids)), device=rows.device)
        return (encode(rows) * encode(src).repeat(len(rows) // len(src), 1)).sum(1).float()

    def _texts(self, ids: torch.Tensor) -> list[str]:
        if self.tokenizer is None:
            raise RuntimeError("the similarity and salience terms read text: call set_vocabulary(tokenizer) first")
        return self.tokenizer.batch_decode(ids, skip_special_tokens=True)

    def _sentence_encoder(self, device: torch.device):
        if self.sentence_encoder is None:
            from ...similarity import shared_encoder

            self.sentence_encoder = shared_encoder(device)
        return self.sentence_encoder

    def _critic_score(self, middle: torch.Tensor, gates: torch.Tensor | None) -> torch.Tensor:
        """The critic's score of middle texts (B,), through frozen weights."""
        mask = middle.ne(self.config.pad_token_id)
        x = _frozen(self.critic.embed_tokens, middle)
        if gates is not None:
            x = x * gates[..., None]
        return _frozen(self.critic, x, mask)

    def _adversary_losses(self, src: torch.Tensor, words: Words, middle: torch.Tensor,
                          stats: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """The second optimiser's terms: Wasserstein critic loss with gradient penalty on real runs
        of as many words against middle texts, and the prior LM's NLL of real sentences."""
        pad = self.config.pad_token_id
        losses = {}
        if self.critic is not None:
            real, _, _ = compact(src, words.tokens(window_mask(words.starts, words.budget)), pad)
            width = max(real.shape[1], middle.shape[1])
            real, fake = (F.pad(t.detach(), (0, width - t.shape[1]), value=pad) for t in (real, middle))
            mask = real.ne(pad) | fake.ne(pad)
            real_x, fake_x = self.critic.embed(real), self.critic.embed(fake)
            gap = self.critic(real_x, mask).mean() - self.critic(fake_x, mask).mean()
            losses["critic"] = -gap
            losses["gradient_penalty"] = self.options.gp_weight * gradient_penalty(self.critic, real_x, fake_x, mask)
            stats["critic_gap"] = gap.detach()
        if self.prior is not None:
            losses["prior_lm"] = self.prior(src, src.ne(pad)).mean()
        return losses


register_family("text", TextConfig, model=TextCodeModel)
