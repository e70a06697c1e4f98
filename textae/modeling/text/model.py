"""The text family: a compressor writes a few of the input's words, a reconstructor rebuilds the input.

Data flow for a batch of B sentences of T tokens (W words, k = budget words kept):
  compressor: tokens (B, T) → Transformer encoder (B, T, d) → one keep logit per word (B, T),
      scored at each word's first token → k words chosen → middle text (B, M), the kept tokens in order
  reconstructor: middle (B, M) → its own encoder (B, M, d) = memory → causal decoder that
      cross-attends to the memory → a copy / generate mixture (B, T, V) over the whole input
  readability: a WGAN-GP critic scores the middle text against runs of k consecutive real words,
      and an optional small LM of the corpus scores its fluency.
  meaning: a frozen sentence encoder (all-MiniLM-L6-v2) adds the middle text's similarity to the
      input to the reward (REINFORCE), and teaches the keep scores its word salience (salience.py).

Why the sentence encoder: the reconstruction reward alone favours the words the reconstructor
cannot guess (names, numbers, rare words from the tail of a long sentence), whatever they say.
On news lead → title, a compressor that had learned salience lost 0.5 to 2.7 ROUGE-1 within 150
steps of that reward alone; with the similarity reward added it held its score.

The middle text is discrete. REINFORCE (default) samples k words without replacement and uses the
greedy choice's reward as the baseline (self-critical); Gumbel uses a relaxed top-k whose gates
scale the middle tokens' embeddings (1 forward, soft gradient back).

Why a copy mechanism (See et al. 2017's pointer-generator): most of what the reconstructor writes
is the middle text's own words. Without it, the reconstructor spent 800 steps learning to copy
through cross-attention (held-out token accuracy 0.18), and the compressor's reward was noise.

Why extract words rather than generate from the whole vocabulary: a word-picking compressor is
readable and faithful from its first step, and trains in CPU minutes; unsupervised sentence
compression by word extraction is also the strongest known approach on Gigaword (Schumann et
al. 2020). The compressor's own choices are all it learns: which words, under a budget.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from ..config import TextAEConfig
from ..generation import beam_search, greedy_or_sample, inference
from ..layers import DecoderLayer, EncoderLayer, KVCache, MemoryKV
from ..model import TextAEModel, TextAEOutput
from .config import TextConfig
from .critic import Critic, PriorLM, gradient_penalty
from .salience import salience_loss, word_salience
from .select import (
    NEG, budgets, compact, relaxed_top_k, sample_without_replacement, start_of_token, top_k_mask, window_mask,
    word_starts,
)


def _frozen(module: nn.Module, *args: torch.Tensor) -> torch.Tensor:
    """Call `module` with its weights detached: the compressor's gradient may flow through the
    critic or prior to its inputs, but must not train them."""
    params = {name: p.detach() for name, p in module.named_parameters()}
    return functional_call(module, params, args)


class TextCodeModel(PreTrainedModel):
    config_class = TextAEConfig
    base_model_prefix = "textae"
    _tied_weights_keys = {"lm_head.weight": "embed_tokens.weight"}
    # --init-from a plain autoencoder: its encoder starts both the compressor and the reader.
    init_aliases = {"reader.": "encoder.", "reader_norm.": "encoder_norm."}

    def __init__(self, config: TextAEConfig):
        super().__init__(config)
        self.options = TextConfig(**config.bottleneck)
        d = config.d_model
        self.embed_tokens = nn.Embedding(config.vocab_size, d, padding_idx=config.pad_token_id)
        self.embed_positions = nn.Embedding(config.max_positions, d)
        self.drop = nn.Dropout(config.dropout)
        layers = lambda cls, n: nn.ModuleList(cls(d, config.n_heads, config.ffn_dim, config.dropout) for _ in range(n))
        self.encoder, self.encoder_norm = layers(EncoderLayer, config.encoder_layers), nn.LayerNorm(d)
        self.keep_head = nn.Linear(d, 1)
        self.reader, self.reader_norm = layers(EncoderLayer, config.encoder_layers), nn.LayerNorm(d)
        self.decoder, self.decoder_norm = layers(DecoderLayer, config.decoder_layers), nn.LayerNorm(d)
        self.lm_head = nn.Linear(d, config.vocab_size, bias=False)
        self.copy_query, self.copy_key = nn.Linear(d, d), nn.Linear(d, d)
        self.copy_gate = nn.Linear(d, 1)  # probability of generating from the vocabulary rather than copying
        o = self.options
        self.critic = Critic(config.vocab_size, config.max_positions, o.critic_dim, o.critic_layers) if o.adversarial_weight else None
        self.prior = (
            PriorLM(config.vocab_size, config.max_positions, o.critic_dim, o.critic_layers, config.bos_token_id)
            if o.prior_weight else None
        )
        # True for vocabulary entries that begin a word (SentencePiece "▁"); set from the tokenizer.
        self.register_buffer("word_start", torch.ones(config.vocab_size, dtype=torch.bool))
        # Only for the similarity and salience terms, which read text: set by set_vocabulary, and the encoder is
        # loaded on first use (anything with encode(texts) -> unit vectors; tests pass a small one).
        self.tokenizer: PreTrainedTokenizerBase | None = None
        self.sentence_encoder = None
        self.step = 0
        self.post_init()

    def get_input_embeddings(self) -> nn.Embedding:
        return self.embed_tokens

    def get_output_embeddings(self) -> nn.Linear:
        return self.lm_head

    def set_vocabulary(self, tokenizer: PreTrainedTokenizerBase) -> None:
        """Learn which tokens start a word, so that whole words are kept or dropped."""
        pieces = tokenizer.convert_ids_to_tokens(list(range(self.config.vocab_size)))
        starts = [p is not None and p.startswith("▁") for p in pieces]
        self.word_start.copy_(torch.tensor(starts, dtype=torch.bool))
        self.tokenizer = tokenizer

    def set_training_step(self, step: int) -> None:
        self.step = step

    def critic_parameters(self) -> list[nn.Parameter]:
        """Weights trained by the second optimiser (critic and prior LM), on their own losses only."""
        return [p for m in (self.critic, self.prior) if m is not None for p in m.parameters()]

    # ----- compressor ---------------------------------------------------------------------
    def _words(self, src: torch.Tensor, max_words: int | None = None, ratio: float | None = None):
        """Word starts (B, T), each token's word start (B, T), selectable tokens (B, T) and budgets (B,)."""
        selectable = src.ne(self.config.pad_token_id) & src.ne(self.config.eos_token_id)
        starts = word_starts(src, self.word_start, selectable)
        k = budgets(starts.sum(1), max_words or self.options.max_words, ratio or self.options.ratio)
        return starts, start_of_token(starts), selectable, k

    def word_logits(self, src: torch.Tensor, starts: torch.Tensor) -> torch.Tensor:
        """Keep logits (B, T) at word starts, NEG elsewhere."""
        if src.shape[1] > self.config.max_positions:
            raise ValueError(f"input has {src.shape[1]} tokens; this model takes at most {self.config.max_positions}")
        real = src.ne(self.config.pad_token_id)
        x = self.drop(self.embed_tokens(src) + self.embed_positions(torch.arange(src.shape[1], device=src.device)))
        for layer in self.encoder:
            x = layer(x, real[:, None, None, :])
        logits = self.keep_head(self.encoder_norm(x)).squeeze(-1).float()
        return logits.masked_fill(~starts, NEG)

    @torch.no_grad()
    def compress(self, input_ids: torch.Tensor, max_words: int | None = None, ratio: float | None = None) -> torch.Tensor:
        """The middle text (B, M) of each sentence (B, T; content + EOS): its best-scored words in order."""
        starts, owner, selectable, k = self._words(input_ids, max_words, ratio)
        keep = top_k_mask(self.word_logits(input_ids, starts), k).gather(1, owner) & selectable
        return compact(input_ids, keep, self.config.pad_token_id)[0]

    # ----- reconstructor ------------------------------------------------------------------
    def _memory(self, middle: torch.Tensor, gates: torch.Tensor | None = None) -> tuple[list[MemoryKV], tuple]:
        """Middle text (B, M) → per-layer cross-attention keys/values over the reader's states, and
        the copy source: keys (B, M, d), token ids (B, M) and mask (B, M)."""
        mask = middle.ne(self.config.pad_token_id)
        x = self.embed_tokens(middle)
        if gates is not None:
            x = x * gates[..., None].to(x.dtype)
        x = self.drop(x + self.embed_positions(torch.arange(middle.shape[1], device=middle.device)))
        for layer in self.reader:
            x = layer(x, mask[:, None, None, :])
        memory = self.reader_norm(x)
        kvs = [layer.cross_attn.memory_kv(memory, mask) for layer in self.decoder]
        return kvs, (self.copy_key(memory), middle, mask)

    def output_logits(self, hidden: torch.Tensor, source: tuple) -> torch.Tensor:
        """Log-probabilities (B, T, V) of generating or copying a middle-text token (normalised
        already, so they serve as logits everywhere)."""
        keys, ids, mask = source
        scores = self.copy_query(hidden) @ keys.transpose(1, 2) / keys.shape[-1] ** 0.5  # (B, T, M)
        attn = scores.float().masked_fill(~mask[:, None, :], -1e9).softmax(-1) * mask[:, None, :]
        copy = torch.zeros(*hidden.shape[:2], self.config.vocab_size, device=hidden.device, dtype=attn.dtype)
        copy = copy.scatter_add(2, ids[:, None, :].expand(-1, hidden.shape[1], -1), attn)
        generate = torch.sigmoid(self.copy_gate(hidden).float())  # (B, T, 1)
        return torch.log(generate * self.lm_head(hidden).float().softmax(-1) + (1 - generate) * copy + 1e-9)

    def greedy_tokens(self, hidden: torch.Tensor, source: tuple) -> torch.Tensor:
        """argmax of `output_logits` for decoder states (B, d): the copy mixture needs all the logits."""
        return self.output_logits(hidden[:, None], source)[:, 0].argmax(-1)

    def _decode(self, tokens: torch.Tensor, start: int, kvs: list[MemoryKV], extra: tuple | None = None,
                caches: list[KVCache] | None = None) -> tuple[torch.Tensor, list[KVCache]]:
        """Decoder hidden states for `tokens` (B, T) at positions start..start+T-1 (same contract as TextAEModel)."""
        pos = torch.arange(start, start + tokens.shape[1], device=tokens.device)
        x = self.drop(self.embed_tokens(tokens) + self.embed_positions(pos))
        new_caches = []
        for i, layer in enumerate(self.decoder):
            x, c = layer(x, kvs[i], None if caches is None else caches[i])
            new_caches.append(c)
        return self.decoder_norm(x), new_caches

    shift_right = TextAEModel.shift_right  # the same teacher-forcing inputs as every other family

    def _reconstruct(self, middle, gates, labels, decoder_input_ids):
        """Teacher-forced logits (B, T, V) and each sentence's mean token NLL (B,)."""
        kvs, source = self._memory(middle, gates)
        hidden, _ = self._decode(decoder_input_ids, 0, kvs)
        logits = self.output_logits(hidden, source)
        nll = F.cross_entropy(logits.flatten(0, 1).float(), labels.flatten(), reduction="none").view_as(labels)
        return logits, nll.sum(1) / labels.ne(-100).sum(1).clamp(min=1)

    # ----- training -----------------------------------------------------------------------
    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        decoder_input_ids: torch.Tensor | None = None,
        **kwargs,
    ) -> TextAEOutput:
        """Compress the clean sentence in `labels` (B, T; -100 = ignore) and rebuild it; `code` is
        the middle text (B, M) the reconstructor read (the sample, when training with REINFORCE).

        The compressor reads the clean sentence: the middle text is made of its words, so BERT-style
        noise would leak mask tokens into it; word dropout on `decoder_input_ids` still applies.
        """
        if labels is None:
            raise ValueError("the text family trains on labels (the clean sentence + EOS)")
        if decoder_input_ids is None:
            decoder_input_ids = self.shift_right(labels)
        o, pad = self.options, self.config.pad_token_id
        src = labels.masked_fill(labels.eq(-100), pad)
        starts, owner, selectable, k = self._words(src)
        logits = self.word_logits(src, starts)
        tokens = lambda word_mask: word_mask.gather(1, owner) & selectable  # words → their tokens
        losses: dict[str, torch.Tensor] = {}
        stats: dict[str, torch.Tensor] = {"middle_words": k.float().mean()}
        gates = logp = None
        learning = self.training and self.step >= o.random_steps
        if self.training and not learning:  # reconstructor warm-up on random words
            keep, _ = sample_without_replacement(torch.zeros_like(logits).masked_fill(~starts, NEG), k)
        elif not self.training:
            keep = top_k_mask(logits, k)
        elif o.estimator == "reinforce":
            keep, logp = sample_without_replacement(logits, k)
            greedy = top_k_mask(logits, k)
        else:
            keep, word_gates = relaxed_top_k(logits, k, o.gumbel_temperature)
            gates = word_gates.gather(1, owner)
        middle, _, middle_gates = compact(src, tokens(keep), pad, gates)
        rows = middle
        if logp is not None:  # one reconstructor pass over the sample and the greedy baseline
            greedy_middle, _, _ = compact(src, tokens(greedy), pad)
            width = max(middle.shape[1], greedy_middle.shape[1])
            rows = torch.cat([F.pad(middle, (0, width - middle.shape[1]), value=pad),
                              F.pad(greedy_middle, (0, width - greedy_middle.shape[1]), value=pad)])
            labels, decoder_input_ids = labels.repeat(2, 1), decoder_input_ids.repeat(2, 1)
        out_logits, nll = self._reconstruct(rows, middle_gates, labels, decoder_input_ids)
        losses["reconstruction"] = F.cross_entropy(out_logits.flatten(0, 1).float(), labels.flatten())

        if learning:
            quality = -nll.detach()  # per sentence, higher = better; the readability terms add to it
            if self.critic is not None:
                score = self._critic_score(rows, gates=None if logp is not None else middle_gates)
                stats["critic_score"] = score.detach()[: len(middle)].mean()
                if logp is None:
                    losses["adversarial"] = -o.adversarial_weight * score.mean()
                quality = quality + o.adversarial_weight * score.detach()
            if self.prior is not None:
                prior_nll = _frozen(self.prior, rows, rows.ne(pad), None if logp is not None else middle_gates)
                stats["prior_nll"] = prior_nll.detach()[: len(middle)].mean()
                if logp is None:
                    losses["prior"] = o.prior_weight * prior_nll.mean()
                quality = quality - o.prior_weight * prior_nll.detach()
            if o.similarity_weight:
                similarity = self._similarity(rows, src)
                stats["similarity"] = similarity[: len(middle)].mean()
                quality = quality + o.similarity_weight * similarity
            if logp is not None:
                sampled, baseline = quality.chunk(2)
                advantage = sampled - baseline
                stats["reward"], stats["advantage"] = sampled.mean(), advantage.mean()
                advantage = advantage / advantage.std().clamp(min=1e-6) if len(advantage) > 1 else advantage
                losses["policy"] = -(advantage * logp).mean()
        if self.training and o.salience_weight:  # the frozen encoder's word salience, on the first rows
            n = min(o.salience_rows, len(src))
            salience = word_salience(src[:n], starts[:n], owner[:n], selectable[:n], self._texts,
                                     self._sentence_encoder(src.device))
            losses["salience"] = o.salience_weight * salience_loss(logits[:n], salience)
        if self.training and (self.critic is not None or self.prior is not None):
            losses.update(self._critic_losses(src, starts, owner, selectable, k, middle, stats))
        loss = sum(losses.values())
        return TextAEOutput(loss=loss, losses=losses, logits=out_logits[: len(middle)], code=middle, stats=stats)

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
            from ...similarity import SentenceEncoder

            self.sentence_encoder = SentenceEncoder(str(device))
        return self.sentence_encoder

    def _critic_score(self, middle: torch.Tensor, gates: torch.Tensor | None) -> torch.Tensor:
        """The critic's score of middle texts (B,), through frozen weights."""
        mask = middle.ne(self.config.pad_token_id)
        x = _frozen(self.critic.embed_tokens, middle)
        if gates is not None:
            x = x * gates[..., None]
        return _frozen(self.critic, x, mask)

    def _critic_losses(self, src, starts, owner, selectable, k, middle, stats) -> dict[str, torch.Tensor]:
        """The second optimiser's terms: Wasserstein critic loss with gradient penalty on real k-word
        runs against middle texts, and the prior LM's NLL of real sentences."""
        o, pad = self.options, self.config.pad_token_id
        losses = {}
        if self.critic is not None:
            real, _, _ = compact(src, window_mask(starts, k).gather(1, owner) & selectable, pad)
            width = max(real.shape[1], middle.shape[1])
            real, fake = (F.pad(t.detach(), (0, width - t.shape[1]), value=pad) for t in (real, middle))
            mask = real.ne(pad) | fake.ne(pad)
            real_x, fake_x = self.critic.embed(real), self.critic.embed(fake)
            gap = self.critic(real_x, mask).mean() - self.critic(fake_x, mask).mean()
            losses["critic"] = -gap
            losses["gradient_penalty"] = o.gp_weight * gradient_penalty(self.critic, real_x, fake_x, mask)
            stats["critic_gap"] = gap.detach()
        if self.prior is not None:
            losses["prior_lm"] = self.prior(src, src.ne(pad)).mean()
        return losses

    # ----- generation ---------------------------------------------------------------------
    @inference
    def generate(self, code: torch.Tensor, max_new_tokens: int | None = None, num_beams: int = 1, do_sample: bool = False,
                 temperature: float = 1.0, top_k: int = 0, top_p: float = 1.0, length_penalty: float = 1.0,
                 generator: torch.Generator | None = None, repetition_penalty: float = 1.0) -> torch.Tensor:
        """Expand middle texts (B, M token ids, PAD-padded) into sentences (B, T) ending in EOS."""
        max_new_tokens = min(max_new_tokens or self.config.max_positions, self.config.max_positions)
        if num_beams > 1:
            if do_sample:
                raise ValueError("beam search with sampling is not supported; pick num_beams=1 or do_sample=False")
            return beam_search(self, code, max_new_tokens, num_beams, length_penalty, repetition_penalty)
        return greedy_or_sample(self, code, max_new_tokens, do_sample, temperature, top_k, top_p, generator, repetition_penalty)
