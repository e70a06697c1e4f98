"""Benchmark: textae against a Hugging Face BART of the same size, side by side in one run.

Both models get the same synthetic batches (random token ids; batch 64; source and target 32
tokens) and the same optimiser (`torch.optim.AdamW`, default implementation). BART is
`BartForConditionalGeneration` built from a `BartConfig` with textae's layers, width, heads,
feed-forward size and vocabulary, random weights, no download. Every figure is the median of
timed iterations after warm-up, with textae and BART iterations interleaved round by round so
that a slow spell of the machine hits both. Measured:

- training target tokens/s (forward + backward + AdamW step), fp32 and bf16 autocast, plus one
  realistic setting (real news sentences in length-bucketed batches, fp32);
- the matmul peak of this machine, fp32 and bf16 (best of three shapes in the three memory
  layouts `nn.Linear` uses), and model FLOPs utilisation (MFU) against it;
- greedy generation tokens/s with a key/value cache, 32 new tokens per sequence for both models
  (end-of-sequence made impossible so neither stops early), batch 64 and batch 1;
- encode throughput (codes/s) on real news sentences;
- the fraction of padded positions in plain vs length-bucketed batches of real news sentences;
- the optimisations tried on top (fused AdamW, `torch.compile`), each measured in the same rounds.

Model FLOPs count every matmul at 2 FLOPs per multiply-add; training = 3 x forward (the backward
pass does two matmuls per forward one). For a batch of B sequences, source length S, target
length T, width d, feed-forward F, vocabulary V, n layers each side:
  encoder, per layer    B*S*(8d^2 + 4dF) + 4*B*S^2*d               (QKV + out, FFN, QK^T and AV)
  decoder, per layer    B*T*(12d^2 + 4dF) + 4*B*T^2*d              (self-attn, cross q + out, FFN)
    + cross-attention   textae: 4*B*K*d^2 + 4*B*T*K*d              (keys/values of the K codes)
                        BART:   4*B*S*d^2 + 4*B*T*S*d              (keys/values of S encoder states)
  textae bottleneck     2*B*P*d*D + 2*B*K*D*d + 2*B*K*d^2          (to_code over the P padded
                                                                    positions, from_code, code_to_input)
  LM head               2*B*T*d*V
Causal self-attention is counted in full (T^2), as PaLM's MFU does; embeddings, norms, softmax and
the optimiser are not counted. MFU = model FLOPs / median step time / the matmul peak of that dtype.

Run `python benchmarks/speed.py` (about 5 minutes on 2 CPU cores); `--quick` is a smoke test.
`--device cuda` runs the same measurements on the GPU (models and batches on the GPU, timings
bracketed by torch.cuda.synchronize, bf16 autocast on CUDA, fp32 matmuls with TF32 off, and the
matmul peak measured on the GPU with an 8192^3 product added to the shapes).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import transformers
from transformers import BartConfig, BartForConditionalGeneration

from textae.modeling import TextAEConfig, TextAEModel
from common import device_name

RESULTS = Path(__file__).parent / "results"
ROOT = Path(__file__).resolve().parent.parent
DEVICE = torch.device("cpu")  # set by --device in main()


def sync() -> None:
    """Wait for the GPU's queued work, so that a timer read after it counts that work."""
    if DEVICE.type == "cuda":
        torch.cuda.synchronize(DEVICE)


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
    return TextAEModel(cfg).to(DEVICE)


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
    return BartForConditionalGeneration(cfg).to(DEVICE)


def synthetic_batch(vocab_size: int, batch: int, length: int, seed: int = 0) -> dict[str, torch.Tensor]:
    """Random content ids (no specials, no padding): the same tensors go to both models."""
    g = torch.Generator().manual_seed(seed)
    input_ids = torch.randint(5, vocab_size, (batch, length), generator=g)
    labels = torch.randint(5, vocab_size, (batch, length), generator=g)
    batch = {"input_ids": input_ids, "attention_mask": torch.ones_like(input_ids), "labels": labels}
    return {k: v.to(DEVICE) for k, v in batch.items()}


def padded_batch(rows: list[list[int]]) -> dict[str, torch.Tensor]:
    """Real sentences as an autoencoding batch: source = target = the ids + EOS, padded (labels -100)."""
    longest = max(map(len, rows)) + 1
    input_ids = torch.full((len(rows), longest), PAD, dtype=torch.long)
    for i, r in enumerate(rows):
        input_ids[i, : len(r) + 1] = torch.tensor([*r, EOS])
    mask = input_ids.ne(PAD)
    batch = {"input_ids": input_ids, "attention_mask": mask.long(), "labels": input_ids.masked_fill(~mask, -100)}
    return {k: v.to(DEVICE) for k, v in batch.items()}


# ----- timing ---------------------------------------------------------------------------------
def other_cpu_s() -> float:
    """CPU seconds used by everything but this process since boot (Linux; 0.0 where /proc is missing)."""
    try:
        with open("/proc/stat") as f:
            ticks = [int(x) for x in f.readline().split()[1:9]]  # user nice system idle iowait irq softirq steal
    except OSError:
        return 0.0
    busy = (sum(ticks) - ticks[3] - ticks[4]) / os.sysconf("SC_CLK_TCK")
    return busy - sum(os.times()[:2])


INTERFERENCE = {"rounds_discarded": 0, "rounds_kept_despite_interference": 0}


def interleaved(fns: dict[str, Callable[[], object]], warmup: int, repeats: int) -> dict[str, list[float]]:
    """Seconds per call of each function, calls interleaved round by round; warm-up rounds dropped.

    On a shared machine one other busy process slows a two-thread run of torch by up to 15x, so a
    round during which other processes used more than 5 % of the CPUs is discarded and rerun (up to
    2 x `repeats` times; after that rounds are kept and counted in INTERFERENCE).
    """
    times: dict[str, list[float]] = {k: [] for k in fns}
    done, retries = 0, 0
    while done < warmup + repeats:
        sync()
        other, start_round = other_cpu_s(), time.perf_counter()
        current = {}
        for name, fn in fns.items():
            start = time.perf_counter()
            fn()
            sync()
            current[name] = time.perf_counter() - start
        # /proc/stat counts in 10 ms ticks: below 3 ticks is noise (kernel threads), not another job.
        busy = other_cpu_s() - other > max(0.05 * (time.perf_counter() - start_round) * (os.cpu_count() or 1), 0.03)
        if busy and done >= warmup:
            if retries < 2 * repeats:
                retries += 1
                INTERFERENCE["rounds_discarded"] += 1
                continue
            INTERFERENCE["rounds_kept_despite_interference"] += 1
        if done >= warmup:
            for name, t in current.items():
                times[name].append(t)
        done += 1
    return times


def median(xs: list[float]) -> float:
    return statistics.median(xs)


def matmul_peak(dtype: torch.dtype, repeats: int) -> dict[str, float]:
    """Best FLOPs/s of (M, K) @ (K, N) over shapes and the layouts of nn.Linear's three matmuls.

    NT is the forward x @ W^T, NN the input gradient g @ W, TN the weight gradient g^T @ x; on a
    CPU without bf16 units their bf16 speeds differ by 10x, so all three are tried. On a GPU an
    8192^3 product is added: the small shapes leave it mostly idle, and MFU is against its full speed.
    """
    out = {}
    shapes = [(2048, 256, 8000), (1024, 1024, 1024), (2048, 128, 4000)]
    for m, k, n in shapes + ([(8192, 8192, 8192)] if DEVICE.type == "cuda" else []):
        for layout in ("NN", "NT", "TN"):
            a = torch.randn(k, m, device=DEVICE).to(dtype).T if layout == "TN" else torch.randn(m, k, device=DEVICE).to(dtype)
            b = torch.randn(n, k, device=DEVICE).to(dtype).T if layout == "NT" else torch.randn(k, n, device=DEVICE).to(dtype)
            t = interleaved({"mm": lambda: a @ b}, warmup=1, repeats=repeats)["mm"]
            out[f"{m}x{k}@{k}x{n} {layout}"] = round(2 * m * k * n / min(t))
    out["best"] = max(out.values())
    return out


# ----- FLOPs ----------------------------------------------------------------------------------
def forward_flops(kind: str, size: Size, b: int, s: int, t: int, cfg: TextAEConfig) -> int:
    """Matmul FLOPs of one forward pass (see the module docstring)."""
    d, f, v, n = size.d_model, size.ffn_dim, size.vocab_size, size.layers
    encoder = n * (b * s * (8 * d * d + 4 * d * f) + 4 * b * s * s * d)
    decoder = n * (b * t * (12 * d * d + 4 * d * f) + 4 * b * t * t * d)
    head = 2 * b * t * d * v
    if kind.startswith("textae"):
        k, p, code = cfg.num_codes, cfg.max_positions, cfg.code_dim
        cross = n * (4 * b * k * d * d + 4 * b * t * k * d)
        bottleneck = 2 * b * p * d * code + 2 * b * k * code * d + 2 * b * k * d * d
        return encoder + bottleneck + decoder + cross + head
    cross = n * (4 * b * s * d * d + 4 * b * t * s * d)
    return encoder + decoder + cross + head


# ----- training -------------------------------------------------------------------------------
def train_step(model: torch.nn.Module, batches: list[dict[str, torch.Tensor]], bf16: bool, fused: bool = False) -> Callable[[], None]:
    """One call = one optimiser step per batch in `batches`."""
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=True if fused else None)

    def step() -> None:
        for batch in batches:
            with torch.autocast(DEVICE.type, dtype=torch.bfloat16, enabled=bf16):
                loss = model(**batch).loss
            loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)

    return step


def compiled_step(size: Size, batches: list[dict[str, torch.Tensor]]) -> tuple[Callable[[], None] | None, dict]:
    """textae under torch.compile (inductor, default mode): the compile time, then a step to time."""
    step = train_step(torch.compile(build_textae(size)), batches, bf16=False)
    start = time.perf_counter()
    try:
        step()
    except Exception as e:  # a missing compiler or an inductor bug must not sink the whole benchmark
        return None, {"error": f"{type(e).__name__}: {e}"[:300]}
    return step, {
        "compile_and_first_step_s": round(time.perf_counter() - start, 1),
        "note": "inductor keeps compiled code in an on-disk cache; a cold compile took about 60 s on this 2-core CPU"
        if DEVICE.type == "cpu" else "compiled for the GPU in this run (inductor's on-disk cache started empty on a fresh machine)",
    }


def train_speed(
    size: Size, batches: list[dict[str, torch.Tensor]], bf16: bool, warmup: int, repeats: int,
    extra: dict[str, Callable[[], None]] | None = None,
) -> dict:
    """textae vs BART (and any `extra` textae variants) on the same batches, interleaved."""
    textae, bart = build_textae(size), build_bart(size)
    fns = {"textae": train_step(textae, batches, bf16), "bart": train_step(bart, batches, bf16), **(extra or {})}
    times = interleaved(fns, warmup, repeats)
    tokens = sum(int(b["labels"].ne(-100).sum()) for b in batches)
    flops = {
        kind: 3 * sum(forward_flops(kind, size, *b["input_ids"].shape, b["labels"].shape[1], textae.config) for b in batches)
        for kind in ("textae", "bart")
    }
    row = {}
    for name, ts in times.items():
        f = flops["textae" if name.startswith("textae") else "bart"]
        row[name] = {
            "step_s": round(median(ts), 4),
            "step_s_min": round(min(ts), 4),
            "step_s_all": [round(x, 4) for x in ts],
            "tokens_per_s": round(tokens / median(ts), 1),
            "model_flops_per_step": f,
            "model_flops_per_s": round(f / median(ts)),
        }
    row["ratio"] = round(row["textae"]["tokens_per_s"] / row["bart"]["tokens_per_s"], 3)
    row["ratio_of_min_times"] = round(row["bart"]["step_s_min"] / row["textae"]["step_s_min"], 3)
    for name in extra or {}:
        row[f"{name}_vs_textae"] = round(row["textae"]["step_s"] / row[name]["step_s"], 3)
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
    from textae.data import SENTENCE_MAX_WORDS, SENTENCE_MIN_WORDS, DataConfig, prepare
    from textae.tokenizer import DEFAULT_VOCAB_SIZE, load_tokenizer, train_tokenizer

    texts = prepare(DataConfig(source="news", min_words=SENTENCE_MIN_WORDS, max_words=SENTENCE_MAX_WORDS))["train"]["text"]
    if quick:
        texts = texts[:5000]
    saved = ROOT / "runs" / "bench-default" / "final"
    if (saved / "tokenizer.json").is_file():
        tokenizer, source = load_tokenizer(saved), f"{saved.relative_to(ROOT)} (vocab {len(load_tokenizer(saved))})"
    else:
        tokenizer = train_tokenizer(texts[:20000], vocab_size=DEFAULT_VOCAB_SIZE)
        source = f"trained on 20,000 news sentences, vocab {DEFAULT_VOCAB_SIZE}"
    ids = tokenizer(list(texts), add_special_tokens=False)["input_ids"]
    return [x[:63] for x in ids], source


def padding_fraction(lengths: list[int], batches: list[list[int]]) -> float:
    """Padded positions / all positions, each batch padded to its longest member."""
    total = sum(max(lengths[i] for i in b) * len(b) for b in batches)
    return 1 - sum(lengths[i] for b in batches for i in b) / total


def padding(ids: list[list[int]]) -> tuple[dict, list[list[int]]]:
    """Padding fractions, and the bucketed batches (indices into `ids`) for reuse."""
    from textae.training.batching import bucket_batches

    lengths = [len(x) + 1 for x in ids]  # + EOS, as the training loop counts them
    order = list(range(len(lengths)))
    random.Random(0).shuffle(order)
    plain = [order[i : i + 64] for i in range(0, len(order), 64)]
    bucketed = bucket_batches(lengths, batch_tokens=2048, max_batch_size=128, seed=0)
    info = {
        "plain": round(padding_fraction(lengths, plain), 4),
        "bucketed": round(padding_fraction(lengths, bucketed), 4),
        "sentences": len(lengths),
        "mean_tokens_with_eos": round(sum(lengths) / len(lengths), 2),
        "plain_batches": "64 random sentences each",
        "bucketed_batches": "bucket_batches(lengths, batch_tokens=2048, max_batch_size=128, seed=0), as `textae train` does",
        "mean_bucketed_batch_size": round(len(lengths) / len(bucketed), 1),
        "measure": "padded token positions / all token positions",
    }
    return info, bucketed


def encode_speed(size: Size, ids: list[list[int]], n: int, batch_size: int, repeats: int) -> dict:
    """model.encode over n news sentences in length-sorted batches (what `AutoEncoder.encode` does)."""
    model, bart = build_textae(size).eval(), build_bart(size).eval()
    rows = random.Random(1).sample(ids, min(n, len(ids)))
    rows.sort(key=len)
    batches = [padded_batch(rows[i : i + batch_size]) for i in range(0, len(rows), batch_size)]

    def textae_encode():
        for b in batches:
            model.encode(b["input_ids"], b["attention_mask"])

    def bart_encoder():  # for scale: BART's encoder states, which are not a fixed-size code
        for b in batches:
            bart.get_encoder()(input_ids=b["input_ids"], attention_mask=b["attention_mask"])

    with torch.no_grad():
        times = interleaved({"textae": textae_encode, "bart_encoder": bart_encoder}, warmup=1, repeats=repeats)
    return {
        "codes_per_s": round(len(rows) / median(times["textae"]), 1),
        "bart_encoder_sequences_per_s": round(len(rows) / median(times["bart_encoder"]), 1),
        "sentences": len(rows),
        "batch_size": batch_size,
        "size": "default",
    }


# ----- reporting ------------------------------------------------------------------------------
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="seconds-long smoke run (numbers are not meaningful)")
    parser.add_argument("--sizes", nargs="+", default=list(SIZES), choices=list(SIZES))
    parser.add_argument("--bf16-sizes", nargs="*", default=["default"], choices=list(SIZES),
                        help="sizes to train in bf16 (on a CPU without bf16 units a large-size step takes ~40 s)")
    parser.add_argument("--no-compile", action="store_true", help="skip the torch.compile row (about 60 s to compile; --quick skips it too)")
    parser.add_argument("--output", type=Path, default=RESULTS / "speed.json")
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"], help="where models and batches live (default cpu)")
    parser.add_argument("--batch-size", type=int, default=None,
                        help="sequences per synthetic batch (default 64 = 2048 tokens, the batch_tokens of `textae train`)")
    args = parser.parse_args()
    global DEVICE
    DEVICE = torch.device(args.device)
    if DEVICE.type == "cuda":
        if not torch.cuda.is_available():
            parser.error(f"--device cuda: torch {torch.__version__} sees no CUDA GPU here "
                         f"({'a CPU-only build' if torch.version.cuda is None else 'no device visible'}); use --device cpu")
        torch.set_float32_matmul_precision("highest")  # fp32 means fp32: TF32 off for the matmul peak and the models
    quick = args.quick
    batch_size, length = (8, 16) if quick else (64, 32)
    batch_size = args.batch_size or batch_size
    # (warm-up, timed) iterations per measurement; BART's bf16 step takes ~5 s on this kind of CPU.
    plan = {"fp32": (1, 1) if quick else (3, 15), "fp32_large": (1, 1) if quick else (2, 7),
            "bf16": (1, 1) if quick else (1, 5), "generate": (1, 1) if quick else (3, 20), "bucketed": (1, 1) if quick else (2, 8)}
    if DEVICE.type == "cuda" and not quick:  # GPU steps take milliseconds: more iterations for the same wall time
        plan = {"fp32": (10, 50), "fp32_large": (10, 50), "bf16": (10, 50), "generate": (3, 20), "bucketed": (3, 20)}
    load_start = os.getloadavg()
    t0 = time.time()

    result: dict = {
        "device": device_name(DEVICE),
        "command": " ".join(["python", *sys.argv]),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "setup": {"batch_size": batch_size, "source_tokens": length, "target_tokens": length,
                  "optimizer": "torch.optim.AdamW(lr=1e-4), default implementation, the same for both",
                  "iterations_warmup_timed": plan, "statistic": "median of the timed iterations",
                  **({"torch_device": str(DEVICE),
                      "timing": "time.perf_counter with torch.cuda.synchronize before and after each timed call",
                      "fp32_matmul": "TF32 off (torch.set_float32_matmul_precision('highest'))"}
                     if DEVICE.type == "cuda" else {}),
                  "models": "textae TextAEConfig(sizes, dropout 0, max_positions 64, num_codes 16, code_dim 128); "
                            "BART BartConfig(same sizes, dropout 0, gelu, max_position_embeddings 64), random weights"},
        "sizes": {name: asdict(SIZES[name]) for name in args.sizes},
        "top_level_keys_use": "the default size row (d_model 128, 4 heads, 2+2 layers, ffn 512, vocab 4000)",
    }

    print("matmul peak ...", flush=True)
    peak_fp32_start = matmul_peak(torch.float32, 1 if quick else 5)
    peak = {"fp32": peak_fp32_start, "bf16": matmul_peak(torch.bfloat16, 5 if DEVICE.type == "cuda" and not quick else 1)}

    print("news sentences ...", flush=True)
    ids, tokenizer_source = news_token_ids(quick)
    pad_info, bucketed = padding(ids)
    result["padding_fraction"] = {**pad_info, "tokenizer": tokenizer_source}

    rows: dict = {}
    for name in args.sizes:
        size = SIZES[name]
        batch = synthetic_batch(size.vocab_size, batch_size, length)
        rows[name] = {}
        print(f"train {name} fp32 ...", flush=True)
        extra, notes = {}, {}
        if name == "default":
            extra["textae_fused_adamw"] = train_step(build_textae(size), [batch], bf16=False, fused=True)
            if not (args.no_compile or quick):
                step, notes["torch_compile"] = compiled_step(size, [batch])
                if step is not None:
                    extra["textae_compiled"] = step
        warm, reps = plan["fp32" if name == "default" else "fp32_large"]
        rows[name]["train_fp32"] = {**train_speed(size, [batch], False, warm, reps, extra), **notes}
        if name in args.bf16_sizes:
            print(f"train {name} bf16 ...", flush=True)
            rows[name]["train_bf16"] = train_speed(size, [batch], True, *plan["bf16"])
        if name == "default":
            print("train default fp32 on bucketed news batches ...", flush=True)
            chosen = random.Random(0).sample(bucketed, 2 if quick else 8)
            real = [padded_batch([ids[i] for i in b]) for b in chosen]
            row = train_speed(size, real, False, *plan["bucketed"])
            row["batches"] = f"{len(real)} bucketed batches of news sentences per timed call, {sum(len(b) for b in chosen)} sentences"
            rows[name]["train_fp32_bucketed_news"] = row
        print(f"generate {name} ...", flush=True)
        rows[name]["generate_batch"] = generate_speed(size, batch, length, *plan["generate"])
        rows[name]["generate_batch1"] = generate_speed(size, {k: v[:1] for k, v in batch.items()}, length, *plan["generate"])
    result["rows"] = rows

    print("encode ...", flush=True)
    result["encode"] = encode_speed(SIZES["default"], ids, 512 if quick else 4096, 128, 1 if quick else 3)

    # The peak again at the end: the machine's speed drifts, and the higher peak gives the lower (safer) MFU.
    peak_fp32_end = matmul_peak(torch.float32, 1 if quick else 5)
    peak["fp32"] = max(peak_fp32_start, peak_fp32_end, key=lambda p: p["best"])
    peak["fp32_best_start_end"] = [peak_fp32_start["best"], peak_fp32_end["best"]]
    for row in rows.values():
        for key, measured in row.items():
            for r in measured.values():
                if isinstance(r, dict) and "model_flops_per_s" in r:
                    r["mfu"] = round(r["model_flops_per_s"] / peak["bf16" if "bf16" in key else "fp32"]["best"], 4)
    result["matmul_peak_flops_per_s"] = peak

    top = rows.get("default") or rows[args.sizes[0]]
    result.update(
        train_ratio_vs_bart_fp32=top["train_fp32"]["ratio"],
        train_ratio_vs_bart_bf16=top.get("train_bf16", {}).get("ratio"),
        decode_ratio_vs_bart=top["generate_batch"]["ratio_from_text"],
        decode_ratio_note=f"batch {batch_size}, {length} new tokens: textae encode + generate vs BART generate (which also encodes); "
        "from ready codes see rows.default.generate_batch.ratio_from_code",
        mfu_fp32=top["train_fp32"]["textae"]["mfu"],
        mfu_bf16=top.get("train_bf16", {}).get("textae", {}).get("mfu"),
        load_average_start_end=[round(load_start[0], 2), round(os.getloadavg()[0], 2)],
        interference=dict(INTERFERENCE, rule="a timed round is rerun when other processes used > 5 % of the CPUs during it"),
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
    head = f"{'size':8} {'measure':34} {'textae':>10} {'BART':>10} {'ratio':>6}"
    print(head)
    print("-" * len(head))
    for name, row in r["rows"].items():
        for key in ("train_fp32", "train_bf16", "train_fp32_bucketed_news"):
            if key not in row:
                continue
            t, label = row[key], key.replace("train_", "train tok/s ").replace("_bucketed_news", " news bucketed")
            print(f"{name:8} {label:34} {t['textae']['tokens_per_s']:10,.0f} {t['bart']['tokens_per_s']:10,.0f} {t['ratio']:6.2f}")
            if "mfu" in t["textae"]:
                print(f"{name:8} {'  MFU':34} {t['textae']['mfu']:10.1%} {t['bart']['mfu']:10.1%}")
            for variant in ("textae_fused_adamw", "textae_compiled"):
                if variant in t:
                    v = t[variant]
                    print(f"{name:8} {'  ' + variant:34} {v['tokens_per_s']:10,.0f} {'':10} {v['tokens_per_s'] / t['bart']['tokens_per_s']:6.2f}")
        for key, label in (("generate_batch", "greedy tok/s B=64"), ("generate_batch1", "greedy tok/s B=1")):
            g = row[key]
            print(f"{name:8} {label + ' text->text':34} {g['textae_from_text']['tokens_per_s']:10,.0f} {g['bart']['tokens_per_s']:10,.0f} {g['ratio_from_text']:6.2f}")
            print(f"{name:8} {label + ' from codes':34} {g['textae_from_code']['tokens_per_s']:10,.0f} {'':10} {g['ratio_from_code']:6.2f}")
    e, p = r["encode"], r["padding_fraction"]
    print(f"encode (default size, news sentences, batch {e['batch_size']}): {e['codes_per_s']:,.0f} codes/s "
          f"(BART encoder {e['bart_encoder_sequences_per_s']:,.0f} sequences/s)")
    print(f"padding on news: plain batches of 64 {p['plain']:.1%}, length-bucketed {p['bucketed']:.1%}")
    print(f"wall time {r['wall_s']:.0f} s, load average start/end {r['load_average_start_end']}, rounds rerun for interference "
          f"{r['interference']['rounds_discarded']}, kept despite it {r['interference']['rounds_kept_despite_interference']}")


if __name__ == "__main__":
    main()
