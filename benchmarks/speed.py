"""Benchmark: textae against a Hugging Face BART of the same size, side by side in one run.

Both models get the same synthetic batches (random token ids; batch 64; source and target 32
tokens) and the same optimiser (AdamW). BART is `BartForConditionalGeneration` built from a
`BartConfig` with textae's layers, width, heads, feed-forward size and vocabulary, random
weights, no download. Measured (median of timed iterations after warm-up; textae and BART
iterations interleaved so a slow spell of the machine hits both):

- training target tokens/s (forward + backward + AdamW step), fp32 and bf16 autocast;
- the matmul peak of this machine, fp32 and bf16, and model FLOPs utilisation (MFU);
- greedy generation tokens/s with a key/value cache, 32 new tokens per sequence for both models
  (end-of-sequence made impossible so neither stops early), batch 64 and batch 1;
- encode throughput (codes/s) on real news sentences;
- the fraction of padded positions in plain vs length-bucketed batches of real news sentences.

Model FLOPs (training = 3 x forward: the backward pass does two matmuls per forward one) count
every matmul with 2 FLOPs per multiply-add, for a batch of B sequences, source length S, target
length T, width d, feed-forward F, vocabulary V, L_e / L_d layers:
  encoder, per layer    B*S*(8d^2 + 4dF) + 4*B*S^2*d               (QKV + out, FFN, QK^T and AV)
  decoder, per layer    B*T*(8d^2 + 4d^2 + 4dF) + 4*B*T^2*d        (self-attn, cross q + out, FFN)
                        + cross-attention keys/values and scores:
                          textae: 4*B*K*d^2 + 4*B*T*K*d            (to the K code vectors)
                          BART:   4*B*S*d^2 + 4*B*T*S*d            (to the S encoder states)
  textae bottleneck     2*B*P*d*D + 2*B*K*D*d + 2*B*K*d^2          (to_code over the P padded
                                                                    positions, from_code, code_to_input)
  LM head               2*B*T*d*V
Causal self-attention is counted in full (T^2), as PaLM's MFU does; embeddings, norms, softmax and
the optimiser are not counted. MFU = model FLOPs / step time / the matmul peak measured in this run.

Run `python benchmarks/speed.py` (about 5 minutes on 2 CPU cores); `--quick` is a smoke test.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import random
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import transformers
from transformers import BartConfig, BartForConditionalGeneration

from textae.modeling import TextAEConfig, TextAEModel

RESULTS = Path(__file__).parent / "results"
ROOT = Path(__file__).resolve().parent.parent


@dataclass
class Size:
    d_model: int
    n_heads: int
    layers: int  # encoder layers = decoder layers
    ffn_dim: int
    vocab_size: int


SIZES = {
    "default": Size(128, 4, 2, 512, 4000),  # TextAEConfig's defaults
    "large": Size(256, 4, 3, 1024, 8000),
}
PAD, BOS, EOS = 0, 2, 3  # textae's special ids; BART is configured with the same ones


# ----- models and batches ---------------------------------------------------------------------
def build_textae(size: Size) -> TextAEModel:
    torch.manual_seed(0)
    cfg = TextAEConfig(
        vocab_size=size.vocab_size, d_model=size.d_model, n_heads=size.n_heads, encoder_layers=size.layers,
        decoder_layers=size.layers, ffn_dim=size.ffn_dim, dropout=0.0,
    )  # max_positions 64, num_codes 16, code_dim 128: the defaults
    return TextAEModel(cfg)


def build_bart(size: Size) -> BartForConditionalGeneration:
    torch.manual_seed(0)
    cfg = BartConfig(
        vocab_size=size.vocab_size, d_model=size.d_model, encoder_layers=size.layers, decoder_layers=size.layers,
        encoder_attention_heads=size.n_heads, decoder_attention_heads=size.n_heads,
        encoder_ffn_dim=size.ffn_dim, decoder_ffn_dim=size.ffn_dim, max_position_embeddings=64,
        dropout=0.0, attention_dropout=0.0, activation_dropout=0.0, encoder_layerdrop=0.0, decoder_layerdrop=0.0,
        activation_function="gelu", pad_token_id=PAD, bos_token_id=BOS, eos_token_id=EOS,
        decoder_start_token_id=BOS, forced_bos_token_id=None, forced_eos_token_id=None,
    )
    return BartForConditionalGeneration(cfg)


def synthetic_batch(vocab_size: int, batch: int, length: int, seed: int = 0) -> dict[str, torch.Tensor]:
    """Random content ids (no specials, no padding): the same tensors go to both models."""
    g = torch.Generator().manual_seed(seed)
    input_ids = torch.randint(5, vocab_size, (batch, length), generator=g)
    labels = torch.randint(5, vocab_size, (batch, length), generator=g)
    return {"input_ids": input_ids, "attention_mask": torch.ones_like(input_ids), "labels": labels}


# ----- timing ---------------------------------------------------------------------------------
def interleaved(fns: dict[str, Callable[[], object]], warmup: int, repeats: int) -> dict[str, list[float]]:
    """Seconds per call of each function, calls interleaved round by round; warm-up rounds dropped."""
    times: dict[str, list[float]] = {k: [] for k in fns}
    for r in range(warmup + repeats):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn()
            if r >= warmup:
                times[name].append(time.perf_counter() - start)
    return times


def median(xs: list[float]) -> float:
    return statistics.median(xs)


def matmul_peak(dtype: torch.dtype, quick: bool) -> dict[str, float]:
    """Best FLOPs/s over a few shapes: a wide LM-head-like product, a square 1024^3 and textae's own head."""
    shapes = [(2048, 256, 8000), (1024, 1024, 1024), (2048, 128, 4000)]
    out = {}
    for m, k, n in shapes:
        a, b = torch.randn(m, k).to(dtype), torch.randn(k, n).to(dtype)
        t = interleaved({"mm": lambda: a @ b}, warmup=1, repeats=1 if quick else 3)["mm"]
        out[f"{m}x{k}@{k}x{n}"] = 2 * m * k * n / min(t)
    out["best"] = max(out.values())
    return out


# ----- FLOPs ----------------------------------------------------------------------------------
def forward_flops(kind: str, size: Size, b: int, s: int, t: int, cfg: TextAEConfig | None = None) -> int:
    """Matmul FLOPs of one forward pass (see the module docstring)."""
    d, f, v, n = size.d_model, size.ffn_dim, size.vocab_size, size.layers
    encoder = n * (b * s * (8 * d * d + 4 * d * f) + 4 * b * s * s * d)
    decoder = n * (b * t * (12 * d * d + 4 * d * f) + 4 * b * t * t * d)
    head = 2 * b * t * d * v
    if kind == "textae":
        k, p, code = cfg.num_codes, cfg.max_positions, cfg.code_dim
        cross = n * (4 * b * k * d * d + 4 * b * t * k * d)
        bottleneck = 2 * b * p * d * code + 2 * b * k * code * d + 2 * b * k * d * d
        return encoder + bottleneck + decoder + cross + head
    cross = n * (4 * b * s * d * d + 4 * b * t * s * d)
    return encoder + decoder + cross + head


# ----- training -------------------------------------------------------------------------------
def train_step(model: torch.nn.Module, batch: dict[str, torch.Tensor], bf16: bool, fused: bool = False) -> Callable[[], None]:
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=fused or None)

    def step() -> None:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            loss = model(**batch).loss
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    return step


def train_speed(size: Size, bf16: bool, warmup: int, repeats: int, batch: dict[str, torch.Tensor]) -> dict:
    textae, bart = build_textae(size), build_bart(size)
    times = interleaved({"textae": train_step(textae, batch, bf16), "bart": train_step(bart, batch, bf16)}, warmup, repeats)
    b, s = batch["input_ids"].shape
    t = batch["labels"].shape[1]
    tokens = int(batch["labels"].ne(-100).sum())
    row = {}
    for name, ts in times.items():
        flops = 3 * forward_flops(name, size, b, s, t, textae.config)
        row[name] = {
            "step_s": round(median(ts), 4),
            "step_s_all": [round(x, 4) for x in ts],
            "tokens_per_s": round(tokens / median(ts), 1),
            "model_flops_per_step": flops,
            "model_flops_per_s": round(flops / median(ts)),
        }
    row["ratio"] = round(row["textae"]["tokens_per_s"] / row["bart"]["tokens_per_s"], 3)
    return row


# ----- generation -----------------------------------------------------------------------------
@contextlib.contextmanager
def no_eos(model: TextAEModel):
    """An end-of-sequence id the model can never emit, so generation always runs its full length."""
    eos = model.config.eos_token_id
    model.config.eos_token_id = model.config.vocab_size
    try:
        yield
    finally:
        model.config.eos_token_id = eos


def generate_speed(size: Size, batch: dict[str, torch.Tensor], new_tokens: int, warmup: int, repeats: int) -> dict:
    textae, bart = build_textae(size).eval(), build_bart(size).eval()
    x, mask = batch["input_ids"], batch["attention_mask"]
    code = textae.encode(x, mask)
    lengths = {}

    def textae_from_code():
        with no_eos(textae):
            lengths["textae"] = textae.generate(code, max_new_tokens=new_tokens).shape[1]

    def textae_from_text():
        with no_eos(textae):
            textae.generate(textae.encode(x, mask), max_new_tokens=new_tokens)

    def bart_generate():
        out = bart.generate(
            input_ids=x, attention_mask=mask, max_new_tokens=new_tokens, do_sample=False, num_beams=1,
            use_cache=True, eos_token_id=size.vocab_size, pad_token_id=PAD,  # an id it can never emit, as for textae
        )
        lengths["bart"] = out.shape[1] - 1  # the decoder start token is not generated

    with torch.no_grad():
        times = interleaved(
            {"textae_from_code": textae_from_code, "textae_from_text": textae_from_text, "bart": bart_generate},
            warmup, repeats,
        )
    if lengths["textae"] != new_tokens or lengths["bart"] != new_tokens:
        raise RuntimeError(f"generated lengths differ from {new_tokens}: {lengths}")
    tokens = x.shape[0] * new_tokens
    row = {name: {"s": round(median(ts), 4), "tokens_per_s": round(tokens / median(ts), 1)} for name, ts in times.items()}
    row["ratio_from_code"] = round(row["textae_from_code"]["tokens_per_s"] / row["bart"]["tokens_per_s"], 3)
    row["ratio_from_text"] = round(row["textae_from_text"]["tokens_per_s"] / row["bart"]["tokens_per_s"], 3)
    return row


# ----- real sentences: padding and encode throughput ------------------------------------------
def news_token_ids(quick: bool) -> tuple[list[list[int]], str]:
    """Token ids of the news training sentences (truncated to 63 like `AutoEncoder`, without EOS)."""
    from textae.data import DataConfig, prepare
    from textae.tokenizer import load_tokenizer, train_tokenizer

    texts = prepare(DataConfig(source="news", min_words=4, max_words=40))["train"]["text"]
    if quick:
        texts = texts[:5000]
    saved = ROOT / "runs" / "bench-default" / "final"
    if (saved / "tokenizer.json").is_file():
        tokenizer, source = load_tokenizer(saved), str(saved.relative_to(ROOT))
    else:
        tokenizer, source = train_tokenizer(texts[:20000], vocab_size=4000), "trained on 20,000 news sentences, vocab 4000"
    ids = tokenizer(list(texts), add_special_tokens=False)["input_ids"]
    return [x[:63] for x in ids], source


def padding_fraction(lengths: list[int], batches: list[list[int]]) -> float:
    """Padded positions / all positions, each batch padded to its longest member."""
    total = sum(max(lengths[i] for i in b) * len(b) for b in batches)
    return 1 - sum(lengths) / total


def padding(ids: list[list[int]]) -> dict:
    from textae.training.batching import bucket_batches

    lengths = [len(x) + 1 for x in ids]  # + EOS, as the collator and the training loop count them
    order = list(range(len(lengths)))
    random.Random(0).shuffle(order)
    plain = [order[i : i + 64] for i in range(0, len(order), 64)]
    bucketed = bucket_batches(lengths, batch_tokens=2048, max_batch_size=128, seed=0)
    return {
        "plain": round(padding_fraction(lengths, plain), 4),
        "bucketed": round(padding_fraction(lengths, bucketed), 4),
        "sentences": len(lengths),
        "mean_tokens": round(sum(lengths) / len(lengths), 2),
        "plain_batches": "64 random sentences each",
        "bucketed_batches": "bucket_batches(lengths, batch_tokens=2048, max_batch_size=128, seed=0)",
        "mean_bucketed_batch_size": round(len(lengths) / len(bucketed), 1),
    }


def encode_speed(size: Size, ids: list[list[int]], n: int, batch_size: int, repeats: int) -> dict:
    """model.encode over n news sentences in length-sorted batches (what `AutoEncoder.encode` does)."""
    model = build_textae(size).eval()
    rows = [x + [EOS] for x in random.Random(1).sample(ids, min(n, len(ids)))]
    order = sorted(range(len(rows)), key=lambda i: len(rows[i]))
    batches = []
    for i in range(0, len(order), batch_size):
        chunk = [rows[j] for j in order[i : i + batch_size]]
        x = torch.full((len(chunk), max(map(len, chunk))), PAD, dtype=torch.long)
        for r, row in enumerate(chunk):
            x[r, : len(row)] = torch.tensor(row)
        batches.append(x)

    def run():
        for x in batches:
            model.encode(x)

    with torch.no_grad():
        t = median(interleaved({"encode": run}, warmup=1, repeats=repeats)["encode"])
    return {"codes_per_s": round(len(rows) / t, 1), "sentences": len(rows), "batch_size": batch_size, "s": round(t, 3)}


# ----- reporting ------------------------------------------------------------------------------
def device_name() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        cpu = next(l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return f"CPU {cpu}, {torch.get_num_threads()} threads, {torch.backends.cpu.get_cpu_capability()}, no GPU"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="seconds-long smoke run (numbers are not meaningful)")
    parser.add_argument("--sizes", nargs="+", default=list(SIZES), choices=list(SIZES))
    parser.add_argument("--output", type=Path, default=RESULTS / "speed.json")
    args = parser.parse_args()
    quick = args.quick
    warmup, repeats = (1, 1) if quick else (2, 5)
    batch_size, length = (8, 16) if quick else (64, 32)
    load_start = os.getloadavg()
    t0 = time.time()

    result: dict = {
        "device": device_name(),
        "command": " ".join(["python", *sys.argv]),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "setup": {"batch_size": batch_size, "source_tokens": length, "target_tokens": length,
                  "optimizer": "torch.optim.AdamW(lr=1e-4), the same for both", "warmup_iterations": warmup,
                  "timed_iterations": repeats, "statistic": "median"},
        "sizes": {name: asdict(SIZES[name]) for name in args.sizes},
        "top_level_keys_use": "the default size row",
    }

    print("matmul peak ...", flush=True)
    peak = {"fp32": matmul_peak(torch.float32, quick), "bf16": matmul_peak(torch.bfloat16, quick)}
    result["matmul_peak_flops_per_s"] = peak

    rows: dict = {}
    for name in args.sizes:
        size = SIZES[name]
        batch = synthetic_batch(size.vocab_size, batch_size, length)
        rows[name] = {}
        for precision in ("fp32", "bf16"):
            print(f"train {name} {precision} ...", flush=True)
            # bf16 matmuls are emulated on CPUs without bf16 units: fewer iterations keep the run short.
            reps = repeats if precision == "fp32" else max(1, repeats // 2)
            row = train_speed(size, precision == "bf16", warmup if precision == "fp32" else 1, reps, batch)
            for model in ("textae", "bart"):
                row[model]["mfu"] = round(row[model]["model_flops_per_s"] / peak[precision]["best"], 4)
            rows[name][f"train_{precision}"] = row
        print(f"generate {name} ...", flush=True)
        rows[name]["generate_batch"] = generate_speed(size, batch, length, warmup, repeats)
        one = {k: v[:1] for k, v in batch.items()}
        rows[name]["generate_batch1"] = generate_speed(size, one, length, warmup, repeats)
    result["rows"] = rows

    print("news sentences: padding and encode ...", flush=True)
    ids, tokenizer_source = news_token_ids(quick)
    result["padding_fraction"] = {**padding(ids), "tokenizer": tokenizer_source}
    result["encode"] = encode_speed(SIZES["default"], ids, 512 if quick else 4096, 128, 1 if quick else 3)

    top = rows.get("default") or rows[args.sizes[0]]
    result.update(
        train_ratio_vs_bart_fp32=top["train_fp32"]["ratio"],
        train_ratio_vs_bart_bf16=top["train_bf16"]["ratio"],
        decode_ratio_vs_bart=top["generate_batch"]["ratio_from_text"],
        decode_ratio_note="batch 64, textae encode + generate vs BART generate (which also encodes); "
        "from ready codes it is rows.default.generate_batch.ratio_from_code",
        mfu_fp32=top["train_fp32"]["textae"]["mfu"],
        mfu_bf16=top["train_bf16"]["textae"]["mfu"],
        load_average_start_end=[round(load_start[0], 2), round(os.getloadavg()[0], 2)],
        wall_s=round(time.time() - t0, 1),
    )
    print_table(result)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.output}")


def print_table(r: dict) -> None:
    peak = r["matmul_peak_flops_per_s"]
    print(f"\n{r['device']}; torch {r['torch']}, transformers {r['transformers']}")
    print(f"matmul peak: fp32 {peak['fp32']['best'] / 1e9:.1f} GFLOPS, bf16 {peak['bf16']['best'] / 1e9:.1f} GFLOPS")
    head = f"{'size':8} {'measure':28} {'textae':>12} {'BART':>12} {'ratio':>7}"
    print(head)
    print("-" * len(head))
    for name, row in r["rows"].items():
        for p in ("fp32", "bf16"):
            t = row[f"train_{p}"]
            print(f"{name:8} {'train tokens/s ' + p:28} {t['textae']['tokens_per_s']:12,.0f} {t['bart']['tokens_per_s']:12,.0f} {t['ratio']:7.2f}")
            print(f"{name:8} {'  MFU ' + p:28} {t['textae']['mfu']:12.1%} {t['bart']['mfu']:12.1%}")
        for key, label in (("generate_batch", "greedy tok/s B=64"), ("generate_batch1", "greedy tok/s B=1")):
            g = row[key]
            print(f"{name:8} {label + ' (from text)':28} {g['textae_from_text']['tokens_per_s']:12,.0f} {g['bart']['tokens_per_s']:12,.0f} {g['ratio_from_text']:7.2f}")
            print(f"{name:8} {label + ' (from codes)':28} {g['textae_from_code']['tokens_per_s']:12,.0f} {'':12} {g['ratio_from_code']:7.2f}")
    e, p = r["encode"], r["padding_fraction"]
    print(f"encode (default size, news sentences, batch {e['batch_size']}): {e['codes_per_s']:,.0f} codes/s")
    print(f"padding fraction on news: plain batches of 64 {p['plain']:.1%}, length-bucketed {p['bucketed']:.1%}")


if __name__ == "__main__":
    main()
