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

import contextlib
import dataclasses
import json
import logging
import math
import shutil
import time
import warnings
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from accelerate import Accelerator, PartialState
from accelerate.utils import DistributedDataParallelKwargs, set_seed
from tqdm.auto import tqdm
from transformers import PreTrainedTokenizerBase

from ..config import RunConfig
from ..data.corpus import PreparedCorpus, prepare_corpus
from ..data.shards import TokenShards
from ..errors import TextAEError, first_line
from ..loading import wrap
from ..locks import FileLock
from ..modeling import TextAEPreTrainedModel, get_family, model_class
from ..tokenizer import load_tokenizer
from .batching import Collator, batch_stream
from .conditions import MARKER_ROWS, conditions, with_markers
from .evaluate import evaluate
from .schedules import warmup_cosine

log = logging.getLogger("textae")
RUN_LOCK = ".lock"  # held in the run directory while a run trains into it


def train(cfg: RunConfig, resume: bool = False, progress: bool = True) -> Path:
    """Train a model as `cfg` says; returns the `final/` model directory. The run directory stays
    locked while the run lasts, so a second run into it is refused instead of interleaving."""
    run_dir = Path(cfg.train.output_dir)
    lock = FileLock(run_dir / RUN_LOCK, f"run directory {run_dir}", "wait for it to finish, or pass another --output")
    created = not run_dir.exists()
    with lock if PartialState().is_main_process else contextlib.nullcontext():  # refused here: the owner's files stay
        try:
            return _train(cfg, run_dir, resume, progress)
        except TextAEError:  # refused before any training: a run directory this call made holds nothing of value
            if created and PartialState().is_main_process and not (run_dir / "checkpoints").exists():
                shutil.rmtree(run_dir, ignore_errors=True)
            raise


def _train(cfg: RunConfig, run_dir: Path, resume: bool, progress: bool) -> Path:
    tc, launched = cfg.train, time.perf_counter()
    checkpoint = _check_run_dir(cfg, run_dir, resume)
    accelerator = _accelerator(cfg)
    set_seed(tc.seed)
    data = _prepare_data(cfg, run_dir, accelerator)
    if accelerator.is_main_process:  # once the data is known to be usable
        cfg.save(run_dir / "config.yaml")
    model = _build_model(data, init_from=tc.init_from if checkpoint is None else None)
    optimizer, adversary_optimizer, scheduler = _optimizers(model, cfg)
    model, optimizer, adversary_optimizer = _prepare(accelerator, model, optimizer, adversary_optimizer)
    state = _load_checkpoint(accelerator, checkpoint, scheduler)
    metrics = _MetricsLog(run_dir / "metrics.jsonl", state.step, accelerator.is_main_process)
    collator = Collator.for_tokenizer(data.tokenizer, cfg.noise)
    stream = batch_stream(
        data.train_ids.lengths + 1, tc.batch_tokens, tc.max_batch_size, tc.seed,
        skip=state.step * tc.grad_accum, rank=accelerator.process_index, world_size=accelerator.num_processes,
    )
    evaluator = wrap(accelerator.unwrap_model(model), data.tokenizer, accelerator.device)
    run_eval = lambda: _evaluate(accelerator, evaluator, data, collator, metrics, state)

    bar = tqdm(total=tc.max_steps, initial=state.step, desc="training", unit="step",
               disable=not (progress and accelerator.is_main_process), dynamic_ncols=True)
    throughput = _Throughput()
    model.train()
    while not _finished(state, cfg):
        started = time.perf_counter()
        for micro in range(tc.grad_accum):
            batch = _batch(collator, data, next(stream), tc.seed * 1_000_003 + state.step * tc.grad_accum + micro,
                           accelerator.device)
            out = _train_step(accelerator, model, batch, optimizer, adversary_optimizer, state.step, tc.grad_clip)
            state.tokens += throughput.count(batch, accelerator.num_processes)
        scheduler.step()
        state.step += 1
        state.elapsed_s += time.perf_counter() - started
        bar.update(1)
        if launched:  # how long data, tokenizer and model took to get going
            log.info("first training step after %.1f s", time.perf_counter() - launched)
            launched = 0.0
        if state.step % tc.log_every == 0:
            _log_step(metrics, bar, out, state, throughput, scheduler)
        if state.step % tc.eval_every == 0:
            run_eval()
        if state.step % tc.save_every == 0:
            _save_checkpoint(accelerator, run_dir, state, scheduler, tc.keep_checkpoints)
    bar.close()
    if state.step % tc.eval_every:
        run_eval()
    if state.step % tc.save_every:
        _save_checkpoint(accelerator, run_dir, state, scheduler, tc.keep_checkpoints)
    _fit_prior(accelerator, evaluator, data, metrics, state, tc.seed)
    return _save_final(accelerator, model, data.tokenizer, cfg, run_dir, state)


# ----- the run directory ------------------------------------------------------------------
def latest_checkpoint(run_dir: Path) -> Path | None:
    steps = sorted((run_dir / "checkpoints").glob("step-*"), key=lambda p: int(p.name.split("-")[1]))
    complete = [p for p in steps if (p / "train_state.json").is_file()]  # a kill mid-save leaves no state file
    return complete[-1] if complete else None


def _mixed_precision(name: str) -> str:
    """'auto' → bf16 on a GPU, fp32 on CPU (CPUs without bf16 units run bf16 matmuls far slower)."""
    if name == "auto":
        return "bf16" if torch.cuda.is_available() and torch.cuda.is_bf16_supported() else "no"
    return name


def _optimizer(model: TextAEPreTrainedModel, cfg: RunConfig) -> torch.optim.Optimizer:
    """AdamW; biases, norms and embeddings are not decayed; the adversary's weights are left to its
    own optimiser. The fused kernel (one pass over all parameters) is faster on GPUs and within noise
    on CPUs (benchmarks/results/speed*.json, the `textae_fused_adamw` rows)."""
    adversary = {id(p) for group in model.adversary_parameter_groups() for p in group["params"]}
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if id(p) not in adversary:
            (decay if p.ndim == 2 and "embed" not in name else no_decay).append(p)
    groups = [{"params": decay, "weight_decay": cfg.train.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=cfg.train.lr, betas=tuple(cfg.train.adam_betas), fused=True)


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


def _initialise_from(model: TextAEPreTrainedModel, path: Path) -> None:
    """Copy every weight whose name and shape match (safetensors only); the rest keep their fresh init."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        source = load_file(path / "model.safetensors")
    except (OSError, SafetensorError) as err:
        raise TextAEError(f"--init-from {path}: cannot read model.safetensors ({first_line(err)}); copy it again or retrain it") from None
    own = model.state_dict()
    for alias, name in model.init_aliases.items():  # e.g. a text model's reader from an AE's encoder
        source |= {alias + k[len(name):]: v for k, v in source.items() if k.startswith(name) and alias + k[len(name):] not in source}
    matched = {k: v for k, v in source.items() if k in own and own[k].shape == v.shape}
    if not matched:
        raise TextAEError(f"--init-from {path}: no weight matches this model's names and shapes; use the same sizes")
    model.load_state_dict(matched, strict=False)
    tied = set(model._tied_weights_keys)  # copies of other weights, loaded with them
    fresh = sorted(set(own) - set(matched) - tied)
    parts = Counter(".".join(name.split(".")[:2]) for name in fresh)  # e.g. bottleneck.diffusion: dozens of tensors
    log.info("initialised %d of %d tensors from %s; new: %s", len(matched), len(own) - len(tied), path,
             ", ".join(f"{p} ({n})" for p, n in sorted(parts.items())) or "none")


@dataclass
class TrainState:
    """Where a run stands; saved beside every checkpoint (train_state.json) and the final model."""

    step: int = 0
    elapsed_s: float = 0.0
    tokens: int = 0


def _check_run_dir(cfg: RunConfig, run_dir: Path, resume: bool) -> Path | None:
    """With `resume`, the run directory's last complete checkpoint; without, a check that it holds no run."""
    tc = cfg.train
    checkpoint = latest_checkpoint(run_dir) if resume else None
    if not resume and (run_dir / "checkpoints").exists() and any((run_dir / "checkpoints").iterdir()):
        raise TextAEError(f"{run_dir} already holds a run; pass --resume to continue it or --output for a new one")
    if tc.max_steps is None and tc.max_minutes is None:
        raise TextAEError("set train.max_steps or train.max_minutes, or the run never ends")
    if checkpoint is not None:
        _check_checkpoint(checkpoint)
    elif tc.init_from:
        _check_weights(_init_dir(tc.init_from) / "model.safetensors", f"--init-from {tc.init_from}")
    run_dir.mkdir(parents=True, exist_ok=True)
    return checkpoint


def _check_weights(path: Path, what: str) -> None:
    """A safetensors file whose header and tensors can be read, checked before any work starts."""
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), "pt") as weights:
            for name in weights.keys():
                weights.get_slice(name)
    except (OSError, SafetensorError) as err:
        raise TextAEError(f"{what}: cannot read {path.name} ({first_line(err)}); copy it again or retrain") from None


def _check_checkpoint(checkpoint: Path) -> None:
    """Every file a resume reads, read once before any work starts: JSON, safetensors, and torch
    files with weights_only (as accelerate loads them: nothing in them can run code)."""
    from accelerate.utils import load

    advice = "delete that folder to resume from the checkpoint before it, or start a new run"
    try:
        saved = json.loads((checkpoint / "train_state.json").read_text())
    except (OSError, ValueError) as err:
        raise TextAEError(f"cannot read {checkpoint}/train_state.json ({first_line(err)}); {advice}") from None
    if "scheduler" not in saved:
        raise TextAEError(f"{checkpoint} was written by an older textae that pickled its learning-rate schedule, which "
                          "textae no longer loads; start a new run (--init-from its final/ folder keeps the weights)")
    for path in sorted(checkpoint.iterdir()):
        if path.suffix == ".safetensors":
            _check_weights(path, f"checkpoint {checkpoint}")
        elif path.suffix in (".bin", ".pkl", ".pt"):
            try:
                with warnings.catch_warnings():  # torch warns about odd pickles before it refuses them
                    warnings.simplefilter("ignore")
                    load(path, map_location="cpu")
            except Exception as err:  # a damaged file or a pickle that tries more than tensors
                raise TextAEError(f"cannot load {path} ({first_line(err)}); {advice}") from None


def _accelerator(cfg: RunConfig) -> Accelerator:
    """Mixed precision and gradient accumulation as configured; DDP is told beforehand when the
    family leaves some weights without gradients in some steps."""
    unused = get_family(cfg.model["family"]).find_unused_parameters
    ddp = [DistributedDataParallelKwargs(find_unused_parameters=True)] if unused else []
    return Accelerator(mixed_precision=_mixed_precision(cfg.train.mixed_precision),
                       gradient_accumulation_steps=cfg.train.grad_accum, kwargs_handlers=ddp)


# ----- data and tokenizer -----------------------------------------------------------------
@dataclass
class PreparedData:
    """Everything the run reads: token ids of the training and held-out sentences, their labels
    for conditional families, and the model section with what the data decides filled in."""

    tokenizer: PreTrainedTokenizerBase
    model_section: dict[str, Any]
    train_ids: TokenShards  # memory-mapped: the corpus stays on disk
    val_ids: list[list[int]]
    val_texts: list[str]
    train_conditions: list[int] | None
    val_conditions: list[int] | None


def _prepare_data(cfg: RunConfig, run_dir: Path, accelerator: Accelerator) -> PreparedData:
    """Clean, split, deduplicate and tokenize once per data config (cached on disk; the main process
    builds, the others then read), and take the run's tokenizer (the initial model's, or one
    trained on the training sentences)."""
    tc = cfg.train
    with accelerator.main_process_first():
        corpus = prepare_corpus(cfg.data)
    tok_dir = run_dir / "tokenizer"
    if not (tok_dir / "tokenizer.json").is_file():
        if accelerator.is_main_process:  # initial weights only make sense with the ids they were trained on
            source = _init_dir(tc.init_from) if tc.init_from else corpus.tokenizer(cfg.tokenizer.vocab_size, cfg.tokenizer.model_type)
            load_tokenizer(source).save_pretrained(tok_dir)
        accelerator.wait_for_everyone()
    tokenizer = load_tokenizer(tok_dir)
    with accelerator.main_process_first():
        shards = corpus.token_shards(tokenizer, cfg.model["max_positions"])
    if accelerator.is_main_process:
        _log_preparation(corpus, shards)
    n_val = min(tc.eval_sentences, len(shards["validation"]))
    val_texts = list(corpus.splits["validation"].select(range(n_val))["text"])
    if accelerator.is_main_process:  # the held-out sentences evaluation decodes, for people to try the model on
        (run_dir / "heldout.txt").write_text("".join(" ".join(t.split()) + "\n" for t in val_texts))
    model_section, split_conditions = conditions(cfg.model, corpus.splits, cfg.data.source)
    if split_conditions:
        train = shards["train"]
        model_section = with_markers(model_section, tokenizer, train.rows(range(min(len(train), MARKER_ROWS))),
                                     split_conditions["train"])
    return PreparedData(
        tokenizer=tokenizer,
        model_section=model_section,
        train_ids=shards["train"],
        val_ids=shards["validation"].rows(range(n_val)),
        val_texts=val_texts,
        train_conditions=split_conditions and split_conditions["train"],
        val_conditions=split_conditions and split_conditions["validation"][:n_val],
    )


def _log_preparation(corpus: PreparedCorpus, shards: dict[str, TokenShards]) -> None:
    train, val = len(shards["train"]), len(shards["validation"])
    if corpus.seconds:
        log.info("prepared %d training and %d held-out sentences (cleaned, split, deduplicated, tokenized) in %.1f s "
                 "(%s sentences/s, %d processes)", train, val, corpus.seconds, f"{round((train + val) / corpus.seconds):,}",
                 corpus.num_proc)
    else:
        log.debug("%d training and %d held-out sentences, prepared before, from %s", train, val, corpus.directory)


# ----- model and optimisers ---------------------------------------------------------------
def _build_model(data: PreparedData, init_from: str | None) -> TextAEPreTrainedModel:
    """The family's model sized by the config and the tokenizer, optionally from a trained model's weights."""
    tokenizer = data.tokenizer
    cls = model_class(data.model_section["family"])
    try:
        model = cls(cls.config_class(
            vocab_size=len(tokenizer), pad_token_id=tokenizer.pad_token_id, unk_token_id=tokenizer.unk_token_id,
            bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
            mask_token_id=tokenizer.mask_token_id, **data.model_section,
        ))
    except ValueError as err:
        raise TextAEError(f"invalid model config: {err}") from None
    model.set_vocabulary(tokenizer)
    if init_from:
        _initialise_from(model, _init_dir(init_from))
    return model


def _optimizers(model: TextAEPreTrainedModel, cfg: RunConfig):
    """(AdamW of the model, the adversary's own optimiser or None, the learning-rate schedule).
    The schedule counts optimiser steps, so it stays out of accelerate's prepare() (which would
    step it once per process) and is checkpointed alongside."""
    tc = cfg.train
    optimizer = _optimizer(model, cfg)
    groups = model.adversary_parameter_groups()
    adversary_optimizer = torch.optim.Adam(groups) if groups else None
    total_steps = tc.max_steps or math.inf  # no step limit: the time cap ends the run
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: warmup_cosine(s, total_steps, tc.warmup_steps, tc.min_lr_ratio)
    )
    return optimizer, adversary_optimizer, scheduler


def _prepare(accelerator: Accelerator, model, optimizer, adversary_optimizer):
    if adversary_optimizer is None:
        return (*accelerator.prepare(model, optimizer), None)
    return accelerator.prepare(model, optimizer, adversary_optimizer)


def _load_checkpoint(accelerator: Accelerator, checkpoint: Path | None, scheduler) -> TrainState:
    """Model, optimisers and RNG states from accelerate's files (safetensors, and torch files read with
    weights_only: nothing there can run code); where the run stood and the schedule from JSON."""
    if checkpoint is None:
        return TrainState()
    saved = json.loads((checkpoint / "train_state.json").read_text())  # checked before any work (_check_checkpoint)
    try:
        accelerator.load_state(str(checkpoint))
    except Exception as err:  # a truncated or foreign file: safetensors, torch and pickle errors alike
        raise TextAEError(f"cannot load checkpoint {checkpoint} ({first_line(err)}); delete that folder to resume from the "
                          "checkpoint before it, or start a new run") from None
    scheduler.load_state_dict(saved.pop("scheduler"))
    state = TrainState(**saved)
    log.info("resumed from %s (step %d, %.1f min trained)", checkpoint, state.step, state.elapsed_s / 60)
    return state


# ----- one step ---------------------------------------------------------------------------
def _batch(collator: Collator, data: PreparedData, rows: list[int], seed: int, device: torch.device) -> dict[str, torch.Tensor]:
    """The model inputs of training rows; the noise seed is a function of the step, for exact resume."""
    conditions = data.train_conditions and [data.train_conditions[i] for i in rows]
    batch = collator(data.train_ids.rows(rows), seed=seed, conditions=conditions)
    return {k: v.to(device) for k, v in batch.items()}


def _train_step(accelerator: Accelerator, model, batch: dict[str, torch.Tensor], optimizer, adversary_optimizer,
                step: int, grad_clip: float):
    """Forward, backward and optimiser steps for one micro-batch. The adversary's loss touches only
    its own weights, so one backward pass gives both optimisers their gradients."""
    accelerator.unwrap_model(model).set_training_step(step)
    with accelerator.accumulate(model):
        out = model(**batch)
        accelerator.backward(out.loss if out.adversary_loss is None else out.loss + out.adversary_loss)
        if accelerator.sync_gradients and grad_clip:
            accelerator.clip_grad_norm_([p for g in optimizer.param_groups for p in g["params"]], grad_clip)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if adversary_optimizer is not None:
            adversary_optimizer.step()
            adversary_optimizer.zero_grad(set_to_none=True)
    return out


def _evaluate(accelerator: Accelerator, evaluator, data: PreparedData, collator: Collator, metrics: _MetricsLog,
              state: TrainState) -> None:
    """Held-out metrics, logged and printed by the main process; the others wait for it."""
    if accelerator.is_main_process:
        result = evaluate(evaluator, data.val_ids, data.val_texts, collator, conditions=data.val_conditions)
        metrics.write(step=state.step, minutes=round(state.elapsed_s / 60, 3), **{k: round(v, 4) for k, v in result.items()})
        tqdm.write(f"step {state.step} | {state.elapsed_s / 60:.1f} min | " + " ".join(f"{k} {v:.3f}" for k, v in result.items()))
    accelerator.wait_for_everyone()


def _fit_prior(accelerator: Accelerator, evaluator, data: PreparedData, metrics: _MetricsLog, state: TrainState,
               seed: int) -> None:
    """Families with an ex-post prior (rae) fit it on the codes of a fixed random sample of training
    sentences once training ends; the final model is saved with it."""
    wanted = evaluator.model.prior_sentences
    if wanted and accelerator.is_main_process:
        n = len(data.train_ids)
        rows = np.sort(np.random.default_rng(seed).choice(n, min(wanted, n), replace=False))  # O(wanted) memory
        eos = evaluator.model.config.eos_token_id
        evaluator.model.eval()  # training is over
        codes = evaluator.encode_ids([row + [eos] for row in data.train_ids.rows(rows)])
        log.info("fitting the prior on the codes of %d training sentences", len(codes))
        result = evaluator.model.fit_prior(torch.from_numpy(codes), seed)
        metrics.write(step=state.step, **{k: round(v, 4) for k, v in result.items()})
    accelerator.wait_for_everyone()


def _finished(state: TrainState, cfg: RunConfig) -> bool:
    tc = cfg.train
    return (bool(tc.max_steps) and state.step >= tc.max_steps) or (
        tc.max_minutes is not None and state.elapsed_s >= tc.max_minutes * 60
    )


class _Throughput:
    """Target tokens since the last log line, for tokens per second."""

    def __init__(self) -> None:
        self.tokens, self.started = 0, time.perf_counter()

    def count(self, batch: dict[str, torch.Tensor], processes: int) -> int:
        """Count a micro-batch's target tokens; returns them summed over the processes."""
        n = int(batch["labels"].ne(-100).sum()) * processes
        self.tokens += n
        return n

    def rate(self) -> float:
        rate = self.tokens / (time.perf_counter() - self.started)
        self.tokens, self.started = 0, time.perf_counter()
        return rate


def _log_step(metrics: _MetricsLog, bar: tqdm, out, state: TrainState, throughput: _Throughput, scheduler) -> None:
    """The step's loss, every named term (the adversary's apart), the learning rate and throughput."""
    rate = throughput.rate()
    terms = {**out.losses, **(out.adversary_losses or {}), **out.stats}
    extra = {} if out.adversary_loss is None else {"adversary_loss": round(out.adversary_loss.item(), 4)}
    bar.set_postfix(loss=f"{out.loss.item():.3f}", tok_s=f"{rate:.0f}")
    metrics.write(step=state.step, minutes=round(state.elapsed_s / 60, 3), loss=round(out.loss.item(), 4), **extra,
                  **{k: round(v.item(), 4) for k, v in terms.items()}, lr=scheduler.get_last_lr()[0],
                  tokens_per_s=round(rate), tokens=state.tokens)


# ----- saving -----------------------------------------------------------------------------
def _save_checkpoint(accelerator: Accelerator, run_dir: Path, state: TrainState, scheduler, keep: int) -> None:
    """accelerate's state (weights in safetensors), then train_state.json, written last: a kill
    mid-save leaves a folder without it, which resuming skips. The schedule is saved as JSON, not
    registered with accelerate, which would pickle it."""
    path = run_dir / "checkpoints" / f"step-{state.step}"
    accelerator.save_state(str(path))
    if accelerator.is_main_process:
        (path / "train_state.json").write_text(json.dumps({**dataclasses.asdict(state), "scheduler": scheduler.state_dict()}))
        for old in sorted((run_dir / "checkpoints").glob("step-*"), key=lambda p: int(p.name.split("-")[1]))[:-keep]:
            shutil.rmtree(old, ignore_errors=True)


def _save_final(accelerator: Accelerator, model, tokenizer: PreTrainedTokenizerBase, cfg: RunConfig, run_dir: Path,
                state: TrainState) -> Path:
    """save_pretrained weights (safetensors), the tokenizer and the run's config in `final/`."""
    final = run_dir / "final"
    if accelerator.is_main_process:
        accelerator.unwrap_model(model).save_pretrained(final)
        tokenizer.save_pretrained(final)
        cfg.save(final / "train_config.yaml")
        (final / "train_state.json").write_text(json.dumps(dataclasses.asdict(state)))
    accelerator.wait_for_everyone()
    return final
