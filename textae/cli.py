"""`textae` command line: each command parses options, calls one library function, prints.

Every option can also come from a `TEXTAE_<COMMAND>_<OPTION>` environment variable.
User mistakes print one line starting with "error:" and exit with status 2.
"""

from __future__ import annotations

import logging
import sys
from functools import wraps
from pathlib import Path

import click

from .errors import TextAEError


class FamilyChoice(click.Choice):
    """The registered code families, read when the option is used, so a family registered after
    import (a plugin, a test) is a valid choice too."""

    def __init__(self) -> None:
        super().__init__([])

    @property
    def choices(self) -> tuple[str, ...]:
        from .modeling import family_names

        return tuple(family_names())

    @choices.setter
    def choices(self, value) -> None:  # click's __init__ assigns it; the registry is the source
        pass


def _friendly(fn):
    """Turn user-facing errors into one line and status 2, never a traceback."""

    @wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except TextAEError as err:
            click.echo(f"error: {err}", err=True)
            sys.exit(2)
        except KeyboardInterrupt:
            click.echo("interrupted; a training run continues from its last checkpoint with --resume", err=True)
            sys.exit(130)

    return wrapper


class _OneLineErrors(click.Group):
    """click's own usage errors (a bad option value, an unknown option) as one `error:` line with
    status 2 too, like textae's, instead of the usage text followed by the message."""

    def main(self, *args, standalone_mode: bool = True, **kwargs):
        if not standalone_mode:
            return super().main(*args, standalone_mode=False, **kwargs)
        try:
            code = super().main(*args, standalone_mode=False, **kwargs)
        except click.ClickException as err:
            click.echo(f"error: {err.format_message()} (see --help)", err=True)
            sys.exit(err.exit_code)
        except click.Abort:
            click.echo("error: aborted", err=True)
            sys.exit(1)
        sys.exit(code if isinstance(code, int) else 0)


@click.group(cls=_OneLineErrors,
             context_settings={"help_option_names": ["-h", "--help"], "auto_envvar_prefix": "TEXTAE", "show_default": True})
@click.option("-v", "--verbose", is_flag=True, help="Show debug logs.")
def cli(verbose: bool) -> None:
    """Unsupervised text autoencoders: compress sentences into codes and rebuild them."""
    configure_logging(verbose)


def configure_logging(verbose: bool = False) -> None:
    """textae's own messages at INFO; the libraries underneath only when something is wrong."""
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO, format="%(message)s")
    for noisy in ("datasets", "transformers", "accelerate", "httpx", "huggingface_hub"):
        logging.getLogger(noisy).setLevel(logging.WARNING if verbose else logging.ERROR)
    if not verbose:  # transformers' "Loading weights" bar on every model load is noise in a pipeline
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()


@cli.command()
@click.option("--config", "config_path", type=click.Path(dir_okay=False), default=None,
              help="YAML config (sections data, tokenizer, model, noise, train). Default: the built-in default config.")
@click.option("--data", default=None, help="Training data: a built-in corpus (news, sms, trec), a local file, or a hub dataset.")
@click.option("--text-column", default=None, help="Column holding the text (default from the config: text).")
@click.option("--output", default=None, help="Run directory (default from the config: runs/default).")
@click.option("--max-steps", type=int, default=None, help="Optimiser steps (overrides the config).")
@click.option("--max-minutes", type=float, default=None, help="Stop after this many minutes of training.")
@click.option("--mixed-precision", type=click.Choice(["auto", "no", "bf16", "fp16"]), default=None,
              help="auto = bf16 on GPU, fp32 on CPU.")
@click.option("--family", type=FamilyChoice(), default=None,
              help="Code family: ae (plain vectors), vae (Gaussian latent), vq (integer codes), cvae (latent + a label column: "
                   "transfer), cae (a label column's markers deleted from the input, plain codes: transfer that keeps the content), gmvae (mixture prior: cluster), text (a few of the input's words: summaries). Default from the config: ae.")
@click.option("--init-from", type=click.Path(), default=None,
              help="Start from a trained model directory (its tokenizer and every matching weight), e.g. a plain AE before a VAE.")
@click.option("--resume", is_flag=True, help="Continue from the run directory's last checkpoint.")
@click.option("--set", "sets", multiple=True, metavar="SECTION.KEY=VALUE",
              help="Override any config value, e.g. --set model.num_codes=4 (repeatable).")
@click.option("--no-progress", is_flag=True, help="Hide the progress bar.")
@_friendly
def train(config_path, data, text_column, output, max_steps, max_minutes, mixed_precision, family, init_from, resume, sets,
          no_progress) -> None:
    """Train an autoencoder; with no options, the default model on the built-in news sentences."""
    from .config import load_config, parse_overrides
    from .training import train as run_training

    overrides = parse_overrides(sets)
    for key, value in {"data.source": data, "data.text_column": text_column, "train.output_dir": output,
                       "train.max_steps": max_steps, "train.max_minutes": max_minutes,
                       "train.mixed_precision": mixed_precision, "model.family": family,
                       "train.init_from": init_from}.items():
        if value is not None:
            overrides[key] = value
    cfg = load_config(config_path, overrides)  # no file: the dataclass defaults = configs/default.yaml
    if resume and config_path is None and (Path(cfg.train.output_dir) / "config.yaml").is_file():
        cfg = load_config(Path(cfg.train.output_dir) / "config.yaml", overrides)  # resume with the run's own config
    final = run_training(cfg, resume=resume, progress=not no_progress)
    click.echo(f"model saved to {final}")


_model_option = click.option("--model", "model_dir", required=True, type=click.Path(), help="A model directory (e.g. runs/default/final).")
_input_option = click.option("--input", "input_path", required=True, type=click.Path(), help="Input file: .txt (one text a line), .jsonl, .csv, .parquet (text formats may be .gz).")
_text_column_option = click.option("--text-column", default="text", help="Column holding the text.")
_id_column_option = click.option("--id-column", default=None, help="Column passed through as the row id (default: 'id' if present, else the row number).")
_batch_option = click.option("--batch-size", type=click.IntRange(min=1), default=128, help="Rows per batch.")
SCORER_CHOICES = ["nll_char", "nll", "elbo", "knn", "mahalanobis", "semantic", "semantic_knn", "semantic_pieces", "ensemble", "fast_ensemble"]  # textae.scoring.SCORERS, without importing torch
_overwrite_option = click.option("--overwrite", is_flag=True,
                                 help="Replace the output if it exists; without it an existing output is refused.")
_beams_option = click.option("--num-beams", type=int, default=1, help="Beam width (1 = greedy).")
_repetition_option = click.option("--repetition-penalty", type=float, default=1.0,
                                  help="Above 1, tokens already produced are less likely again (breaks loops such as '0000000'); 1 = off.")


@cli.command()
@_model_option
@_input_option
@click.option("--output", required=True, type=click.Path(),
              help="Codes file (.parquet): columns id and code (ae: K×D floats; vae, gmvae: Z floats; cvae: Z floats then the "
                   "label distribution; vq: K·heads integers; "
                   "text: the middle text, also as .jsonl/.csv/.txt).")
@_text_column_option
@_id_column_option
@_batch_option
@_overwrite_option
@_friendly
def encode(model_dir, input_path, output, text_column, id_column, batch_size, overwrite) -> None:
    """Compress texts into codes, one per input row, in input order."""
    _refuse_existing(output, overwrite=overwrite)
    from .loading import load
    from .io import read_texts, write_rows

    model = load(model_dir)
    if not model.text_codes and not output.endswith(".parquet"):
        raise TextAEError("codes are written as .parquet; name the output e.g. codes.parquet")
    ids, texts = read_texts(input_path, text_column, id_column)
    codes = model.encode(texts, batch_size=batch_size, progress=True)
    if model.text_codes:
        write_rows(output, {"id": ids, "code": codes})
        click.echo(f"wrote {len(ids)} middle texts to {output}")
        return
    write_rows(output, {"id": ids, "code": codes.tolist()})
    click.echo(f"wrote {len(ids)} codes of shape {tuple(codes.shape[1:])} to {output}")


@cli.command()
@_model_option
@_input_option
@click.option("--output", required=True, type=click.Path(), help="Texts file: .jsonl/.csv/.parquet (id, text) or .txt (one a line).")
@_id_column_option
@_batch_option
@_beams_option
@_overwrite_option
@_friendly
def decode(model_dir, input_path, output, id_column, batch_size, num_beams, overwrite) -> None:
    """Expand codes (the file `textae encode` wrote) back into text; a text-family model expands any short texts."""
    _refuse_existing(output, overwrite=overwrite)
    from .loading import load
    from .io import read_codes, read_texts, write_rows

    model = load(model_dir)
    if model.text_codes:
        ids, codes = read_texts(input_path, "code", id_column) if not input_path.endswith(".txt") else read_texts(input_path)
    else:
        ids, codes = read_codes(input_path, id_column)
    texts = model.decode(codes, batch_size=batch_size, progress=True, num_beams=num_beams)
    write_rows(output, {"id": ids, "text": texts})
    click.echo(f"wrote {len(texts)} texts to {output}")


@cli.command()
@_model_option
@_input_option
@click.option("--output", required=True, type=click.Path(), help="Output: .jsonl/.csv/.parquet (id, text, summary) or .txt (summaries, one a line).")
@click.option("--max-words", type=int, default=None, help="Word budget of each summary. Default: the model's (10).")
@click.option("--ratio", type=float, default=None, help="Also at most this fraction of the input's words. Default: the model's (0.5).")
@click.option("--phrase-weight", type=float, default=None,
              help="Cost of each break between the summary's phrases: higher keeps longer runs of the input and reads "
                   "more like text; 0 (with --fluency-weight 0) keeps the most informative words wherever they are, "
                   "a keyword list. Default: the model's (2.0).")
@click.option("--fluency-weight", type=float, default=None,
              help="Weight of the corpus LM's surprise at each break: higher keeps breaks that real text could make "
                   "(slower). Needs a model trained with model.bottleneck.fluency_weight > 0, which has the LM. "
                   "Default: the model's (0).")
@_text_column_option
@_id_column_option
@_batch_option
@_overwrite_option
@_friendly
def summarize(model_dir, input_path, output, max_words, ratio, phrase_weight, fluency_weight, text_column, id_column,
              batch_size, overwrite) -> None:
    """Summarise each row with a text-family model: its most informative words, in order, within the budget,
    kept as phrases of the input so that the summary reads as text rather than a keyword list."""
    _refuse_existing(output, overwrite=overwrite)
    from .loading import load
    from .io import read_texts, write_rows

    model = load(model_dir)
    ids, texts = read_texts(input_path, text_column, id_column)
    summaries = model.summarize(texts, max_words=max_words, ratio=ratio, phrase_weight=phrase_weight,
                                fluency_weight=fluency_weight, batch_size=batch_size, progress=True)
    write_rows(output, {"id": ids, "text": texts, "summary": summaries})
    click.echo(f"wrote {len(summaries)} summaries to {output}")


@cli.command()
@_model_option
@_input_option
@click.option("--output", required=True, type=click.Path(), help="Output: .jsonl/.csv/.parquet (id, text, reconstruction) or .txt.")
@_text_column_option
@_id_column_option
@_batch_option
@_beams_option
@click.option("--show", type=int, default=0, help="Also print the first N inputs and their reconstructions.")
@_overwrite_option
@_friendly
def reconstruct(model_dir, input_path, output, text_column, id_column, batch_size, num_beams, show, overwrite) -> None:
    """Text → code → text: how well does the model rebuild each row?"""
    _refuse_existing(output, overwrite=overwrite)
    from .loading import load
    from .io import read_texts, write_rows

    ids, texts = read_texts(input_path, text_column, id_column)
    rebuilt = load(model_dir).reconstruct(texts, batch_size=batch_size, progress=True, num_beams=num_beams)
    write_rows(output, {"id": ids, "text": texts, "reconstruction": rebuilt})
    for text, back in list(zip(texts, rebuilt))[:show]:
        click.echo(f"{'=' if text == back else '~'} {text}\n  → {back}")
    click.echo(f"wrote {len(rebuilt)} reconstructions to {output}")


@cli.command("fit-detector")
@_model_option
@_input_option
@click.option("--scorer", type=click.Choice(SCORER_CHOICES), default="ensemble",
              help="ensemble (default): for any kind of unusual text, the best on average in "
                   "benchmarks/results/anomaly.json: nll_char, semantic, semantic_knn and semantic_pieces combined by "
                   "Fisher's method. "
                   "Unusual in form (spam, noise): nll_char / nll (reconstruction loss per character / per token), "
                   "mahalanobis / knn (distance of the model's code from these normal texts' codes), elbo (VAE bound "
                   "per token), fast_ensemble (nll_char + mahalanobis, no sentence encoder: several times faster than "
                   "ensemble). Unusual in "
                   "meaning (another topic, another kind of question): semantic / semantic_knn (distance in a "
                   "pretrained sentence encoder's space, all-MiniLM-L6-v2, fetched once from PyPI). A few unusual "
                   "words in an ordinary text (spam's offers in a chat): semantic_pieces (each word piece, in "
                   "context, against the normal texts' nearest).")
@click.option("--contamination", type=float, default=0.05, help="Expected fraction of outliers: sets the threshold.")
@click.option("--neighbors", type=int, default=5, help="k of the knn scorer.")
@click.option("--aggregate", type=click.Choice(["mean", "max"]), default="mean",
              help="How a long document's windows combine: the mean over its text, or its most unusual window.")
@_text_column_option
@_batch_option
@_overwrite_option
@_friendly
def fit_detector(model_dir, input_path, scorer, contamination, neighbors, aggregate, text_column, batch_size, overwrite) -> None:
    """Learn what normal text looks like for `textae score`: saves a detector into the model directory."""
    from .io import read_texts
    from .scoring import DETECTOR_DIR, AnomalyDetector

    _refuse_existing(Path(model_dir) / DETECTOR_DIR, overwrite=overwrite)
    _, texts = read_texts(input_path, text_column)
    det = AnomalyDetector(model_dir, scorer, contamination, neighbors, aggregate, batch_size).fit(texts)
    path = det.save()
    click.echo(f"fitted the {scorer} detector on {len(det.decision_scores_)} texts (threshold {det.threshold_:.4g}) "
               f"and saved it to {path}")


@cli.command()
@_model_option
@click.option("--input", "input_path", required=True,
              help="Texts to score: .txt (one a line), .jsonl, .csv, .tsv (each may be .gz) or .parquet; '-' reads stdin.")
@click.option("--output", required=True, type=click.Path(),
              help="Scores: .jsonl, .csv or .parquet with id, score, nll, n_tokens, is_outlier, reason; one row per input row, in order.")
@click.option("--input-format", type=click.Choice(["txt", "jsonl", "csv", "tsv"]), default=None,
              help="Format of stdin (default txt), or of a file whose name does not say.")
@_text_column_option
@_id_column_option
@click.option("--threshold", type=float, default=None, help="Flag rows scoring above this (overrides the fitted threshold).")
@click.option("--contamination", type=float, default=None,
              help="Flag this fraction of the fitted normal texts' score distribution (needs fit-detector).")
@click.option("--scorer", type=click.Choice(SCORER_CHOICES), default=None,
              help="Default: the fitted detector's, else nll_char (see fit-detector --help).")
@click.option("--aggregate", type=click.Choice(["mean", "max"]), default=None,
              help="Long documents are cut into windows: score their mean or their most unusual window. Default: the detector's (mean).")
@_batch_option
@click.option("--buffer-rows", type=click.IntRange(min=1), default=4096, help="Rows sorted by length together (memory stays bounded by this).")
@click.option("--resume", is_flag=True, help="Finish a killed job: no row is lost or written twice.")
@click.option("--no-progress", is_flag=True, help="Hide the progress bar.")
@_overwrite_option
@_friendly
def score(model_dir, input_path, output, input_format, text_column, id_column, threshold, contamination, scorer,
          aggregate, batch_size, buffer_rows, resume, no_progress, overwrite) -> None:
    """Score how unusual each row is (higher = more unusual): a streaming, resumable batch job.

    Which scorer suits which kind of anomaly (AUROC in benchmarks/results/anomaly.json): the default
    `ensemble` for any kind, or when you do not know; `nll_char` or `fast_ensemble` when unusual texts
    differ in form (spam, noise) and speed matters; `semantic_knn` when they differ only in meaning;
    `semantic_pieces` when a few words in an otherwise ordinary text give them away."""
    from .scoring import load_detector, score_file

    det = load_detector(model_dir, scorer, aggregate, batch_size)
    done = score_file(det, input_path, output, text_column, id_column, input_format, threshold, contamination, resume,
                      buffer_rows, progress=not no_progress, overwrite=overwrite)
    if done.resumed_from < 0:
        click.echo(f"{output} is already complete")
    elif done.rows:
        click.echo(f"wrote {done.rows} scores to {output} ({det.scorer} scorer"
                   + (f", {done.outliers} flagged" if det.threshold_ is not None or threshold is not None else "") + ")")


def _refuse_existing(*paths: str | Path | None, overwrite: bool) -> None:
    """Finished work is never replaced without --overwrite; checked before any work starts."""
    for path in paths:
        if not overwrite and path is not None and Path(path).exists():
            raise TextAEError(f"{path} already exists; pass --overwrite to replace it, or choose another --output")


def _write_or_print(output: str | None, columns: dict[str, list]) -> None:
    from .io import write_rows

    if output:
        write_rows(output, columns)
        click.echo(f"wrote {len(next(iter(columns.values())))} rows to {output}")
    else:
        for text in columns["text"]:
            click.echo(text)


@cli.command()
@_model_option
@click.option("-n", "--num", "n", type=int, default=10, help="How many sentences to draw.")
@click.option("--output", type=click.Path(), default=None, help="Write .txt/.jsonl/.csv/.parquet instead of printing.")
@click.option("--temperature", type=click.FloatRange(min=0), default=None,
              help="Token sampling temperature of the decoder [default: 1.0; 0 with --num-beams]; 0 decodes each drawn "
                   "code greedily (or with --num-beams), which for a rae model writes far less varied, more repetitive "
                   "text (benchmarks/results/generative.json, mauve_greedy_decoding).")
@click.option("--prior-temperature", type=float, default=1.0, show_default=True,
              help="Scales the prior's spread (rae: the kde's bandwidth, or the diffusion's starting noise): below 1 "
                   "draws codes nearer the prior's modes (rae kde: nearer training sentences; safer, less varied).")
@_beams_option
@_repetition_option
@click.option("--seed", type=int, default=0, help="Random seed: the same seed gives the same sentences.")
@_overwrite_option
@_friendly
def sample(model_dir, n, output, temperature, prior_temperature, num_beams, repetition_penalty, seed, overwrite) -> None:
    """Decode codes drawn from the model's prior. For rae models (recommended: configs/rae.yaml) the prior
    is a kernel density on 10,000 training codes: a training sentence's code plus Gaussian noise of prior_bandwidth
    (0.3) code standard deviations per dimension, its decoder told that level; the samples are new sentences on
    the frames of training sentences (prior: gmm, a Gaussian mixture, samples worse; prior: diffusion is a
    denoiser); vae: z ~ N(0, I);
    gmvae: a random component; cvae: a random label; vq: each slot's empirical code distribution. A plain
    ae model has no prior."""
    _refuse_existing(output, overwrite=overwrite)
    from .loading import load
    from .latent import sample as draw

    if temperature is None:
        temperature = 0.0 if num_beams > 1 else 1.0
    if temperature > 0 and num_beams > 1:
        raise TextAEError("--num-beams needs --temperature 0 (beam search does not sample)")
    decoding = {"do_sample": True, "temperature": temperature} if temperature > 0 else {"num_beams": num_beams}
    texts = draw(load(model_dir), n, seed=seed, prior_temperature=prior_temperature,
                 repetition_penalty=repetition_penalty, **decoding)
    _write_or_print(output, {"id": list(range(len(texts))), "text": texts})


@cli.command()
@_model_option
@click.argument("sentence_a")
@click.argument("sentence_b")
@click.option("--steps", type=int, default=5, help="Points on the path, both ends included.")
@_beams_option
@_friendly
def interpolate(model_dir, sentence_a, sentence_b, steps, num_beams) -> None:
    """Decode evenly spaced points between the codes of two sentences. Any vector-code family; a rae model
    (configs/rae.yaml, recommended) walks the great circle between the codes, and its decoder is told how
    far each point is from the ends (midpoint_level at the middle); with `prior: diffusion`
    its denoiser also pulls each point between the ends toward sentences' codes. The ends are the
    sentences' own codes."""
    from .loading import load
    from .latent import interpolate as between

    for k, text in enumerate(between(load(model_dir), sentence_a, sentence_b, steps, num_beams=num_beams)):
        click.echo(f"{k / (steps - 1):.2f}  {text}")


@cli.command()
@_model_option
@_input_option
@click.option("--output", required=True, type=click.Path(),
              help="Output .jsonl/.csv/.parquet: id, text, rank, paraphrase, similarity, overlap.")
@click.option("-n", "--num", "n", type=int, default=3, help="Paraphrases per input (fewer when the model finds fewer).")
@click.option("--candidates", type=int, default=48, show_default=True, help="Perturbed codes decoded per input and round: more find a closer meaning within "
                   "--max-overlap, at proportional cost.")
@click.option("--scale", type=float, default=None,
              help="First perturbation (rae: code standard deviations, default 0.15; vae: prior standard deviations, a "
                   "component's for gmvae, default 0.5; vq: chance to swap each code, default 0.1; ae: times the code's "
                   "spread, default 0.25). "
                   "Doubles each round for inputs that still have no candidate within --max-overlap.")
@click.option("--rank-by", type=click.Choice(["meaning", "code"]), default="meaning", show_default=True,
              help="meaning: cosine of MiniLM sentence embeddings (fetched once); code: of the model's own codes, "
                   "which mostly rewards shared wording.")
@click.option("--max-overlap", type=click.FloatRange(0, 1), default=0.5, show_default=True,
              help="Candidates keeping more of the input's wording than this (sentence BLEU / 100) rank last.")
@_text_column_option
@_id_column_option
@_batch_option
@click.option("--seed", type=int, default=0, help="Random seed.")
@_overwrite_option
@_friendly
def paraphrase(model_dir, input_path, output, n, candidates, scale, rank_by, max_overlap, text_column, id_column,
               batch_size, seed, overwrite) -> None:
    """Rewrite each input: decode codes near its own, drop copies, keep those that change enough of its
    wording and mean the most alike. Any vector-code family; rae models (configs/rae.yaml, recommended)
    move the standardised code by --scale standard deviations and tell the decoder so (with `prior:
    diffusion`, its denoiser then pulls the code back toward sentences' codes)."""
    _refuse_existing(output, overwrite=overwrite)
    from .loading import load
    from .io import read_texts, write_rows
    from .latent import paraphrase as rewrite

    if output.endswith(".txt"):
        raise TextAEError("paraphrases have several columns; name the output .jsonl, .csv or .parquet")
    ids, texts = read_texts(input_path, text_column, id_column)
    ae = load(model_dir)
    encoder = None
    if rank_by == "meaning":
        from .similarity import shared_encoder

        encoder = shared_encoder(ae.model.device, advice="check the connection, or rank by the model's codes: --rank-by code")
    found, stats = rewrite(ae, texts, n, candidates, scale, seed=seed, batch_size=batch_size, progress=True,
                           encoder=encoder, max_overlap=max_overlap)
    write_rows(output, {
        "id": [ids[p.index] for p in found], "text": [texts[p.index] for p in found], "rank": [p.rank for p in found],
        "paraphrase": [p.text for p in found], "similarity": [p.similarity for p in found],
        "overlap": [p.overlap for p in found],
    })
    click.echo(f"wrote {len(found)} paraphrases of {len(texts)} inputs to {output} "
               f"({stats['inputs_without_paraphrase']:.0%} of inputs got none; {stats['copy_rate']:.0%} of candidates were copies)")


@cli.command()
@_model_option
@_input_option
@click.option("--to", "to_label", required=True, help="The label to rewrite toward (one the model was trained with).")
@click.option("--output", required=True, type=click.Path(),
              help="Output .jsonl/.csv/.parquet (id, text, label: the model's guess of the input's, transferred) or .txt.")
@_text_column_option
@_id_column_option
@_batch_option
@_beams_option
@_repetition_option
@click.option("--label-weight", type=click.FloatRange(min=0), default=None,
              help="cae models: the knob between content and label. How much a rewrite's fit to the new label, against "
                   "the old one, counts beside its fluency when the decoder picks among candidates (0 = the most fluent; "
                   "higher changes the label more often and keeps less). Toward a label a whole message carries (spam), "
                   "the lead for it that the text with the appended sentence must reach: the label's typical lead x weight / 2. "
                   "Default 3 (chosen on dev splits of training rows, benchmarks/label_weight_dev.py); "
                   "benchmarks/results/conditional_knob.png draws the trade-off.")
@click.option("--guidance", type=click.FloatRange(min=0), default=None,
              help="cae models: how much more the new label counts than the kept words' own label when the decoder "
                   "writes words where the old label's stood (one of the candidates). Default 4. Does not apply where "
                   "an exemplar is appended.")
@_overwrite_option
@_friendly
def transfer(model_dir, input_path, to_label, output, text_column, id_column, batch_size, num_beams, repetition_penalty,
             label_weight, guidance, overwrite) -> None:
    """Rewrite texts toward another label, keeping their content. With a --family cae model (configs/cae.yaml,
    recommended) its decoder, told the new label, picks the best of (a) the text with every word that marks
    no label kept and the new label's words written where the old label's stood, and (b) the text with one
    of the new label's markers put in at a word boundary, or in place of the next one or two words (greedy;
    --num-beams and --repetition-penalty do not apply). Toward a label that a whole message carries rather
    than a word (its training rows typically hold 2 or more of its markers beyond any other label's: spam),
    the text is kept whole and one of that label's training sentences is appended, the nearest by the
    model's content code among those that make the text read as the new label. A cvae model decodes the
    whole text from its content latent with the new label."""
    _refuse_existing(output, overwrite=overwrite)
    from .loading import load
    from .io import read_texts, write_rows
    from .transfer import label_index, label_names, transfer as rewrite

    model = load(model_dir)
    label_index(model, to_label)  # a bad label fails before reading or encoding anything
    ids, texts = read_texts(input_path, text_column, id_column)
    codes = model.encode(texts, batch_size=batch_size, progress=True)  # once: for the rewrite and the input's label
    extra = {k: v for k, v in (("guidance", guidance), ("label_weight", label_weight)) if v is not None}
    moved = rewrite(model, texts, to_label, batch_size=batch_size, progress=True, codes=codes, num_beams=num_beams,
                    repetition_penalty=repetition_penalty, **extra)
    write_rows(output, {"id": ids, "text": texts, "label": label_names(model, codes), "transferred": moved})
    click.echo(f"wrote {len(moved)} texts rewritten toward '{to_label}' to {output}")


@cli.command()
@_model_option
@_input_option
@click.option("--output", required=True, type=click.Path(),
              help="Output .jsonl/.csv/.parquet: id, text, cluster, probability. Top words go beside it, NAME.clusters.json.")
@click.option("--top-words", type=int, default=10, help="Words listed per cluster.")
@_text_column_option
@_id_column_option
@_batch_option
@_overwrite_option
@_friendly
def cluster(model_dir, input_path, output, top_words, text_column, id_column, batch_size, overwrite) -> None:
    """Assign each text to a cluster of a --family gmvae model, and list each cluster's typical words."""
    _refuse_existing(output, Path(output).with_suffix(".clusters.json"), overwrite=overwrite)
    import json

    from .loading import load
    from .clustering import cluster as assign, top_words as typical
    from .io import read_texts, write_rows

    if output.endswith(".txt"):
        raise TextAEError("clusters have several columns; name the output .jsonl, .csv or .parquet")
    ids, texts = read_texts(input_path, text_column, id_column)
    probs = assign(load(model_dir), texts, batch_size=batch_size, progress=True)
    clusters = probs.argmax(1)
    write_rows(output, {"id": ids, "text": texts, "cluster": clusters.tolist(), "probability": [round(float(p), 4) for p in probs.max(1)]})
    words = typical(texts, clusters, top_words)
    sizes = {c: int((clusters == c).sum()) for c in words}
    summary = Path(output).with_suffix(".clusters.json")
    partial = summary.with_name(summary.name + ".tmp")  # never a half-written file under the real name
    partial.write_text(json.dumps({str(c): {"size": sizes[c], "top_words": w} for c, w in words.items()}, indent=1) + "\n")
    partial.replace(summary)
    for c, w in words.items():
        click.echo(f"cluster {c:>3} ({sizes[c]:>6} rows): {' '.join(w)}")
    click.echo(f"wrote {len(ids)} cluster assignments to {output} and top words to {summary}")


@cli.command()
@_model_option
@click.option("--data", "sources", multiple=True, required=True,
              help="Texts to map: a built-in corpus (news, sms, trec) or a file; repeat to compare sources.")
@click.option("--label-column", default=None, help="Colour by this column (default: by source).")
@_text_column_option
@click.option("--output", required=True, type=click.Path(), help="Image file (.png, .pdf or .svg).")
@click.option("--method", type=click.Choice(["pca", "tsne", "umap"]), default="pca", help="2-D projection.")
@click.option("--max-points", type=int, default=1000, help="Sentences from each source (held-out ones first).")
@click.option("--split-sentences/--no-split-sentences", default=True, help="Map sentences (as the default model is trained) or whole rows.")
@_overwrite_option
@_friendly
def plot(model_dir, sources, label_column, text_column, output, method, max_points, split_sentences, overwrite) -> None:
    """Draw a 2-D map of the codes of held-out sentences, coloured by source or label."""
    _refuse_existing(output, overwrite=overwrite)
    from .loading import load
    from datasets import concatenate_datasets

    from .data import SENTENCE_MAX_WORDS, SENTENCE_MIN_WORDS, DataConfig, prepare
    from .plotting import plot_codes

    texts, labels = [], []
    for source in sources:
        cfg = DataConfig(source=source, text_column=text_column, split_sentences=split_sentences,
                         min_words=SENTENCE_MIN_WORDS, max_words=SENTENCE_MAX_WORDS)
        data = prepare(cfg)  # the split training makes: held-out rows come first, so the map shows unseen text
        rows = concatenate_datasets([data["validation"], data["train"]])
        rows = rows.select(range(min(max_points, len(rows))))
        if label_column and label_column not in rows.column_names:
            raise TextAEError(f"{source} has no column '{label_column}' (columns: {', '.join(rows.column_names)})")
        texts += rows["text"]
        labels += [str(v) for v in rows[label_column]] if label_column else [source] * len(rows)
    plot_codes(load(model_dir), texts, labels, output, method)
    click.echo(f"drew {len(texts)} codes to {output}")


def main() -> None:
    cli(prog_name="textae")
