"""The peer of the generative benchmark: a decoder-only Transformer language model (GPT-2 architecture,
from transformers) with textae's tokenizer, trained on the same news sentences for a fixed number of
minutes. It is the baseline `textae sample` must match, and the fluency judge (per-token NLL) of
interpolations and paraphrases. Only benchmarks use it.

    python benchmarks/peer_lm.py --tokenizer runs/bench-default/final --minutes 20 --output runs/bench-generative/peer-lm
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerBase

from textae.config import DataConfig
from textae.data.corpus import prepare_corpus
from textae.tokenizer import load_tokenizer
from textae.training.batching import bucket_batches
from textae.training.schedules import warmup_cosine

MAX_POSITIONS = 64  # textae's default max_positions: the same sentences, cut the same way


def build(tokenizer: PreTrainedTokenizerBase, width: int, layers: int, heads: int, ffn: int) -> GPT2LMHeadModel:
    config = GPT2Config(
        vocab_size=len(tokenizer), n_positions=MAX_POSITIONS + 1, n_embd=width, n_layer=layers, n_head=heads,
        n_inner=ffn, resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0, bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
    )
    return GPT2LMHeadModel(config)


def _batch(rows: Sequence[Sequence[int]], bos: int, eos: int, pad: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(input ids BOS + x + EOS, labels with -100 on padding)."""
    seqs = [[bos, *r, eos] for r in rows]
    width = max(map(len, seqs))
    ids = torch.full((len(seqs), width), pad, dtype=torch.long)
    for i, s in enumerate(seqs):
        ids[i, : len(s)] = torch.tensor(s)
    labels = ids.clone()
    labels[ids.eq(pad)] = -100
    labels[:, 0] = -100  # BOS is given, never predicted
    return ids, labels


def train(tokenizer_dir: Path, output: Path, minutes: float, width: int = 128, layers: int = 4, heads: int = 4,
          ffn: int = 512, lr: float = 3e-3, batch_tokens: int = 2048, seed: int = 0, data: DataConfig | None = None) -> dict:
    """Train for `minutes` of wall time (the schedule decays with elapsed time) on `data`'s training
    sentences (default: the built-in news) and save to `output`."""
    torch.manual_seed(seed)
    tokenizer = load_tokenizer(tokenizer_dir)
    shards = prepare_corpus(data or DataConfig()).token_shards(tokenizer, MAX_POSITIONS)["train"]
    model = build(tokenizer, width, layers, heads, ffn).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, betas=(0.9, 0.98), weight_decay=0.1)
    budget, started, step, tokens, epoch = minutes * 60, time.perf_counter(), 0, 0, 0
    losses: list[float] = []
    while time.perf_counter() - started < budget:
        for rows in bucket_batches(shards.lengths + 2, batch_tokens, 128, seed=seed + epoch):
            elapsed = time.perf_counter() - started
            if elapsed >= budget:
                break
            for group in optimizer.param_groups:  # warm-up, then cosine over the time budget
                group["lr"] = lr * warmup_cosine(int(1000 * elapsed / budget), 1000, 5, 0.1)
            ids, labels = _batch(shards.rows(rows), tokenizer.bos_token_id, tokenizer.eos_token_id, tokenizer.pad_token_id)
            loss = model(input_ids=ids, attention_mask=ids.ne(tokenizer.pad_token_id), labels=labels).loss
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            step, tokens = step + 1, tokens + int(labels.ne(-100).sum())
            losses.append(loss.item())
            if step % 200 == 0:
                print(f"peer LM step {step} loss {np.mean(losses[-200:]):.3f} {elapsed / 60:.1f} min", flush=True)
        epoch += 1
    model.save_pretrained(output)
    tokenizer.save_pretrained(output)
    info = {"steps": step, "tokens": tokens, "minutes": round((time.perf_counter() - started) / 60, 2),
            "width": width, "layers": layers, "heads": heads, "ffn": ffn,
            "parameters": sum(p.numel() for p in model.parameters()), "final_loss": round(float(np.mean(losses[-200:])), 4)}
    (output / "peer_lm.json").write_text(json.dumps(info, indent=1) + "\n")
    return info


class PeerLM:
    """A trained peer: samples and per-token NLL of texts."""

    def __init__(self, path: Path):
        self.tokenizer = load_tokenizer(path)
        self.model = GPT2LMHeadModel.from_pretrained(path, use_safetensors=True).eval()

    @torch.no_grad()
    def sample(self, n: int, temperature: float = 1.0, seed: int = 0, batch_size: int = 250) -> list[str]:
        torch.manual_seed(seed)
        tok, out = self.tokenizer, []
        for start in range(0, n, batch_size):
            b = min(batch_size, n - start)
            ids = torch.full((b, 1), tok.bos_token_id, dtype=torch.long)
            generated = self.model.generate(
                ids, attention_mask=torch.ones_like(ids), do_sample=True, temperature=temperature, top_k=0, top_p=1.0,
                max_new_tokens=MAX_POSITIONS, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id,
            )
            rows = [r[1:] for r in generated.tolist()]
            rows = [r[: r.index(tok.eos_token_id)] if tok.eos_token_id in r else r for r in rows]
            out.extend(tok.batch_decode(rows, skip_special_tokens=True))
        return out

    @torch.no_grad()
    def token_nll(self, texts: Sequence[str], batch_size: int = 256) -> np.ndarray:
        """Per-token NLL (nats) of each text, EOS included."""
        tok = self.tokenizer
        ids = [x[: MAX_POSITIONS - 1] for x in tok(list(texts), add_special_tokens=False)["input_ids"]]
        out = np.zeros(len(ids))
        for start in range(0, len(ids), batch_size):
            rows = ids[start : start + batch_size]
            x, labels = _batch(rows, tok.bos_token_id, tok.eos_token_id, tok.pad_token_id)
            logits = self.model(input_ids=x, attention_mask=x.ne(tok.pad_token_id)).logits[:, :-1]
            nll = F.cross_entropy(logits.transpose(1, 2).float(), labels[:, 1:], reduction="none")
            counts = labels[:, 1:].ne(-100).sum(1)
            out[start : start + len(rows)] = (nll.sum(1) / counts).numpy()
        return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tokenizer", type=Path, required=True, help="A textae model directory whose tokenizer to use.")
    parser.add_argument("--minutes", type=float, required=True)
    parser.add_argument("--output", type=Path, required=True)
    parser.add_argument("--layers", type=int, default=4, help="4 = the autoencoder's 2 encoder + 2 decoder layers.")
    args = parser.parse_args()
    print(json.dumps(train(args.tokenizer, args.output, args.minutes, layers=args.layers)))


if __name__ == "__main__":
    main()
