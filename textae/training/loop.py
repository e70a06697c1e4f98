"""The one training loop every family shares, over `accelerate`.

Run directory layout:
  config.yaml              the full RunConfig of the run
  tokenizer/               trained once, reused on resume
  metrics.jsonl            one JSON object per log / eval event
  heldout.txt              the validation sentences evaluation reconstructs
  checkpoints/step-N/      accelerate state (model, optimiser, scheduler, RNG) + train_state.json
  final/                   save_pretrained weights (safetensors), tokenizer, train_config.yaml
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from pathlib import Path

import torch
from accelerate import Accelerator
from accelerate.utils import DistributedDataParallelKwargs, set_seed
from tqdm.auto import tqdm

from ..autoencoder import AutoEncoder, wrap
from ..config import RunConfig
from ..data import prepare
from ..errors import TextAEError
from ..modeling import TextAEConfig, TextAEModel, model_class
from ..tokenizer import load_tokenizer, train_tokenizer
from .batching import Collator, batch_stream, tokenize_dataset
from .conditions import conditions
from .evaluate import evaluate
from .schedules import warmup_cosine

log = logging.getLogger("textae")


def latest_checkpoint(run_dir: Path) -> Path | None:
    steps = sorted((run_dir / "checkpoints").glob("step-*"), key=lambda p: int(p.name.split("-")[1]))
    complete = [p for p in steps if (p / "train_state.json").is_file()]  # a kill mid-save leaves no state file
    return complete[-1] if complete else None


def _mixed_precision(name: str) -> str:
    """'auto' → bf16 on a GPU, fp32 on CPU (CPUs without bf16 units run bf16 matmuls far slower)."""
    if name == "auto":
        return "bf16" if torch.cuda.is_available() and torch.cuda.is_bf16_supported() else "no"
    return name


def _optimizer(model: torch.nn.Module, cfg: RunConfig) -> torch.optim.Optimizer:
    """AdamW; biases, norms and embeddings are not decayed. The fused kernel (one pass over all
    parameters) made a default-size step 10 % faster on an H200 (benchmarks/speed.py, the
    `textae_fused_adamw` rows); on 2 CPU cores it is within the machine's noise of the
    per-parameter loop (paired A/Bs: 1.00x and 1.05x). A critic's weights are left to its own optimiser."""
    critic = {id(p) for p in _critic_parameters(model)}
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if id(p) not in critic:
            (decay if p.ndim == 2 and "embed" not in name else no_decay).append(p)
    groups = [{"params": decay, "weight_decay": cfg.train.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=cfg.train.lr, betas=tuple(cfg.train.adam_betas), fused=True)


def _critic_parameters(model: torch.nn.Module) -> list[torch.nn.Parameter]:
    """A family's discriminator-side weights (the text family's critic and prior LM), else none."""
    return model.critic_parameters() if hasattr(model, "critic_parameters") else []


def _critic_optimizer(model: torch.nn.Module) -> torch.optim.Optimizer | None:
    """The critic's own Adam with WGAN-GP's betas (0.5, 0.9); its losses touch no other weight."""
    params = _critic_parameters(model)
    if not params:
        return None
    return torch.optim.Adam(params, lr=model.options.critic_lr, betas=(0.5, 0.9))


class _MetricsLog:
    """Append-only JSON lines; on resume, events after the checkpoint's step are dropped (they will recur)."""

    def __init__(self, path: Path, resume_step: int, enabled: bool):
        self.path, self.enabled = path, enabled
        if enabled and path.exists():
            kept = [l for l in path.read_text().splitlines() if l.strip() and json.loads(l).get("step", 0) <= resume_step]
            path.write_text("".join(l + "\n" for l in kept))

    def write(self, **event) -> None:
        if self.enabled:
            with self.path.open("a") as f:
                f.write(json.dumps(event) + "\n")


def _init_dir(path: str) -> Path:
    """The model directory to initialise from: a `final/` folder or a run directory holding one."""
    path = Path(path)
    for candidate in (path, path / "final"):
        if (candidate / "model.safetensors").is_file() and (candidate / "tokenizer.json").is_file():
            return candidate
    raise TextAEError(f"--init-from {path}: no model.safetensors and tokenizer.json there; pass a trained model's final/ folder")


def _initialise_from(model: TextAEModel, path: Path) -> None:
    """Copy every weight whose name and shape match (safetensors only); the rest keep their fresh init."""
    from safetensors.torch import load_file

    source = load_file(path / "model.safetensors")
    own = model.state_dict()
    for alias, name in getattr(model, "init_aliases", {}).items():  # e.g. a text model's reader from an AE's encoder
        source |= {alias + k[len(name):]: v for k, v in source.items() if k.startswith(name) and alias + k[len(name):] not in source}
    matched = {k: v for k, v in source.items() if k in own and own[k].shape == v.shape}
    if not matched:
        raise TextAEError(f"--init-from {path}: no weight matches this model's names and shapes; use the same sizes")
    model.load_state_dict(matched, strict=False)
    tied = set(model._tied_weights_keys)  # copies of other weights, loaded with them
    fresh = sorted(set(own) - set(matched) - tied)
    log.info("initialised %d of %d tensors from %s; new: %s", len(matched), len(own) - len(tied), path, ", ".join(fresh) or "none")


def train(cfg: RunConfig, resume: bool = False, progress: bool = True) -> Path:
    """Train a model as `cfg` says; returns the `final/` model directory."""
    tc = cfg.train
    run_dir = Path(tc.output_dir)
    ckpt = latest_checkpoint(run_dir) if resume else None
    if not resume and (run_dir / "checkpoints").exists() and any((run_dir / "checkpoints").iterdir()):
        raise TextAEError(f"{run_dir} already holds a run; pass --resume to continue it or --output for a new one")
    if tc.max_steps is None and tc.max_minutes is None:
        raise TextAEError("set train.max_steps or train.max_minutes, or the run never ends")
    total_steps = tc.max_steps or 10**9

    # The text family leaves its compressor untouched while `random_steps` run, and a cvae batch
    # without labels leaves its classifiers untouched, which DDP must allow.
    unused = cfg.model.get("family") in ("text", "cvae")
    ddp = [DistributedDataParallelKwargs(find_unused_parameters=True)] if unused else []
    accelerator = Accelerator(mixed_precision=_mixed_precision(tc.mixed_precision), gradient_accumulation_steps=tc.grad_accum,
                              kwargs_handlers=ddp)
    set_seed(tc.seed)
    main = accelerator.is_main_process
    run_dir.mkdir(parents=True, exist_ok=True)
    if main:
        cfg.save(run_dir / "config.yaml")

    with accelerator.main_process_first():
        data = prepare(cfg.data)
    tok_dir = run_dir / "tokenizer"
    if not (tok_dir / "tokenizer.json").is_file():
        if main and tc.init_from:  # the initial weights only make sense with the ids they were trained on
            load_tokenizer(_init_dir(tc.init_from)).save_pretrained(tok_dir)
        elif main:
            log.info("training a %s tokenizer (vocab %d) on %d texts", cfg.tokenizer.model_type, cfg.tokenizer.vocab_size, len(data["train"]))
            train_tokenizer(data["train"]["text"], cfg.tokenizer.vocab_size, cfg.tokenizer.model_type).save_pretrained(tok_dir)
        accelerator.wait_for_everyone()
    tokenizer = load_tokenizer(tok_dir)
    max_positions = cfg.model["max_positions"]
    train_ids = list(tokenize_dataset(data["train"], tokenizer, max_positions)["input_ids"])
    val = data["validation"].select(range(min(tc.eval_sentences, len(data["validation"]))))
    val_ids = list(tokenize_dataset(val, tokenizer, max_positions)["input_ids"])
    if main:  # the held-out sentences evaluation decodes, for people to try the model on
        (run_dir / "heldout.txt").write_text("".join(" ".join(t.split()) + "\n" for t in val["text"]))

    model_section, split_conditions = conditions(cfg.model, data, cfg.data.source)
    train_conditions = split_conditions and split_conditions["train"]
    val_conditions = split_conditions and split_conditions["validation"][: len(val_ids)]
    model_cfg = TextAEConfig(
        vocab_size=len(tokenizer),
        pad_token_id=tokenizer.pad_token_id,
        unk_token_id=tokenizer.unk_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        mask_token_id=tokenizer.mask_token_id,
        **model_section,
    )
    try:
        model = model_class(model_cfg.family)(model_cfg)
    except ValueError as err:
        raise TextAEError(f"invalid model config: {err}") from None
    if hasattr(model, "set_vocabulary"):
        model.set_vocabulary(tokenizer)
    if tc.init_from and ckpt is None:
        _initialise_from(model, _init_dir(tc.init_from))
    optimizer = _optimizer(model, cfg)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: warmup_cosine(s, total_steps, tc.warmup_steps, tc.min_lr_ratio)
    )
    # The schedule counts optimiser steps, so it stays out of prepare() (which would step it once
    # per process) and is checkpointed alongside.
    critic_optimizer = _critic_optimizer(model)
    if critic_optimizer is None:
        model, optimizer = accelerator.prepare(model, optimizer)
    else:
        model, optimizer, critic_optimizer = accelerator.prepare(model, optimizer, critic_optimizer)
    accelerator.register_for_checkpointing(scheduler)
    collator = Collator.for_tokenizer(tokenizer, cfg.noise)

    step, elapsed, tokens_seen = 0, 0.0, 0
    if ckpt is not None:
        accelerator.load_state(str(ckpt))
        state = json.loads((ckpt / "train_state.json").read_text())
        step, elapsed, tokens_seen = state["step"], state["elapsed_s"], state["tokens"]
        log.info("resumed from %s (step %d, %.1f min trained)", ckpt, step, elapsed / 60)
    metrics = _MetricsLog(run_dir / "metrics.jsonl", step, main)

    lengths = [len(x) + 1 for x in train_ids]
    stream = batch_stream(
        lengths, tc.batch_tokens, tc.max_batch_size, tc.seed,
        skip=step * tc.grad_accum, rank=accelerator.process_index, world_size=accelerator.num_processes,
    )
    evaluator = wrap(accelerator.unwrap_model(model), tokenizer, accelerator.device)

    def save_checkpoint() -> None:
        path = run_dir / "checkpoints" / f"step-{step}"
        accelerator.save_state(str(path))
        if main:
            (path / "train_state.json").write_text(json.dumps({"step": step, "elapsed_s": elapsed, "tokens": tokens_seen}))
            for old in sorted((run_dir / "checkpoints").glob("step-*"), key=lambda p: int(p.name.split("-")[1]))[: -tc.keep_checkpoints]:
                shutil.rmtree(old, ignore_errors=True)

    def run_eval() -> None:
        if main:
            result = evaluate(evaluator, val_ids, list(val["text"]), collator, conditions=val_conditions)
            metrics.write(step=step, minutes=round(elapsed / 60, 3), **{k: round(v, 4) for k, v in result.items()})
            tqdm.write(f"step {step} | {elapsed / 60:.1f} min | " + " ".join(f"{k} {v:.3f}" for k, v in result.items()))
        accelerator.wait_for_everyone()

    bar = tqdm(total=tc.max_steps, initial=step, desc="training", unit="step", disable=not (progress and main), dynamic_ncols=True)
    model.train()
    window_tokens, window_start = 0, time.perf_counter()
    while step < total_steps and (tc.max_minutes is None or elapsed < tc.max_minutes * 60):
        t0 = time.perf_counter()
        for micro in range(tc.grad_accum):
            rows = next(stream)
            batch = collator([train_ids[i] for i in rows], seed=tc.seed * 1_000_003 + step * tc.grad_accum + micro,
                             conditions=train_conditions and [train_conditions[i] for i in rows])
            batch = {k: v.to(accelerator.device) for k, v in batch.items()}
            accelerator.unwrap_model(model).set_training_step(step)
            with accelerator.accumulate(model):
                out = model(**batch)
                accelerator.backward(out.loss)
                if accelerator.sync_gradients and tc.grad_clip:
                    accelerator.clip_grad_norm_([p for g in optimizer.param_groups for p in g["params"]], tc.grad_clip)
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)
                if critic_optimizer is not None:  # the same backward pass gave the critic its own gradients
                    critic_optimizer.step()
                    critic_optimizer.zero_grad(set_to_none=True)
            n = int(batch["labels"].ne(-100).sum())
            window_tokens, tokens_seen = window_tokens + n, tokens_seen + n * accelerator.num_processes
        scheduler.step()
        step += 1
        elapsed += time.perf_counter() - t0
        bar.update(1)
        if step % tc.log_every == 0:
            rate = window_tokens * accelerator.num_processes / (time.perf_counter() - window_start)
            terms = {k: round(v.item(), 4) for k, v in {**out.losses, **out.stats}.items()}
            bar.set_postfix(loss=f"{out.loss.item():.3f}", tok_s=f"{rate:.0f}")
            metrics.write(step=step, minutes=round(elapsed / 60, 3), loss=round(out.loss.item(), 4), **terms,
                          lr=scheduler.get_last_lr()[0], tokens_per_s=round(rate), tokens=tokens_seen)
            window_tokens, window_start = 0, time.perf_counter()
        if step % tc.eval_every == 0:
            run_eval()
        if step % tc.save_every == 0:
            save_checkpoint()
    bar.close()
    if step % tc.eval_every:
        run_eval()
    if step % tc.save_every:
        save_checkpoint()

    final = run_dir / "final"
    if main:
        AutoEncoder(accelerator.unwrap_model(model), tokenizer).save_pretrained(final)
        cfg.save(final / "train_config.yaml")
        (final / "train_state.json").write_text(json.dumps({"step": step, "elapsed_s": elapsed, "tokens": tokens_seen}))
    accelerator.wait_for_everyone()
    return final
