"""Train a SentencePiece subword model and serve it as a Hugging Face fast tokenizer.

SentencePiece trains the vocabulary (unigram or BPE, byte fallback so no text is ever ``<unk>``);
the pieces and scores are then rebuilt as a ``tokenizers`` pipeline, so the result saves as a
self-contained ``tokenizer.json`` and encodes large batches in Rust.

Normalisation: every run of Unicode whitespace (spaces, tabs, newlines, no-break spaces) becomes
one space and leading/trailing whitespace is dropped; nothing else changes (no Unicode
normalisation, no lower-casing, no spaces added or removed around punctuation), so
``decode(encode(text), skip_special_tokens=True) == " ".join(text.split())`` for any text.

Encoding adds no special tokens: ``tokenizer(text)["input_ids"]`` are content ids only, and the
data collator adds ``<s>``/``</s>`` where a model wants them.
"""

from __future__ import annotations

import functools
import io
import itertools
import json
import re
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

import sentencepiece as spm
from tokenizers import Tokenizer, decoders, pre_tokenizers
from tokenizers.models import BPE, Unigram
from transformers import PreTrainedTokenizerFast

from textae.errors import TextAEError, first_line

# Ids 0..4, in this order: the noise functions and the models rely on them.
SPECIAL_TOKENS = {
    "pad_token": "<pad>",
    "unk_token": "<unk>",
    "bos_token": "<s>",
    "eos_token": "</s>",
    "mask_token": "<mask>",
}
NUM_SPECIAL = len(SPECIAL_TOKENS)  # ids below this are special
# Small: each piece is seen often in a short CPU run, and the softmax is cheap.
DEFAULT_VOCAB_SIZE = 4000
MODEL_MAX_LENGTH = 512
MODEL_TYPES = ("unigram", "bpe")
# The smallest vocabulary that holds the special tokens, the 256 byte pieces and one character;
# real text needs a few dozen more (SentencePiece then says how many).
MIN_VOCAB_SIZE = NUM_SPECIAL + 256 + 1
# Score for pieces that SentencePiece never matches against text (control, byte, unknown):
# far below any real piece, so literal text such as "<0x41>" is spelled with ordinary pieces
# whenever its characters are in the vocabulary.
_UNMATCHABLE_SCORE = -1e4


def _clean(texts: Iterable[str]) -> Iterator[str]:
    """Apply the tokenizer's own whitespace normalisation so training sees what encoding sees."""
    for text in texts:
        text = " ".join(text.split())
        if text:
            yield text


def train_tokenizer(
    texts: Iterable[str],
    vocab_size: int = DEFAULT_VOCAB_SIZE,
    model_type: str = "unigram",
    *,
    character_coverage: float = 0.9995,
    max_sentences: int = 2_000_000,
    seed: int = 0,
) -> PreTrainedTokenizerFast:
    """Train a SentencePiece model on `texts` and return it as a fast tokenizer.

    `vocab_size` is an upper bound: a corpus too small to fill it gives a smaller vocabulary
    (use ``len(tokenizer)``). It must still cover the NUM_SPECIAL special tokens, the 256 byte pieces and
    every character SentencePiece keeps, else a TextAEError says how large it must be.
    """
    if model_type not in MODEL_TYPES:
        raise TextAEError(f"model_type must be one of {MODEL_TYPES}, got {model_type!r}")
    cleaned = _clean(texts)
    first = next(cleaned, None)
    if first is None:
        raise TextAEError("cannot train a tokenizer: no non-empty texts")
    sp = _train_sentencepiece(
        itertools.chain([first], cleaned),
        vocab_size=vocab_size,
        model_type=model_type,
        character_coverage=character_coverage,
        max_sentences=max_sentences,
        seed=seed,
    )
    return _to_fast(sp, model_type)


def _train_sentencepiece(
    sentences: Iterator[str],
    *,
    vocab_size: int,
    model_type: str,
    character_coverage: float,
    max_sentences: int,
    seed: int,
) -> spm.SentencePieceProcessor:
    """Train in memory; ``hard_vocab_limit=False`` lets a small corpus give a smaller vocabulary."""
    spm.set_random_generator_seed(seed)
    model = io.BytesIO()
    try:
        spm.SentencePieceTrainer.train(
            sentence_iterator=sentences,
            model_writer=model,
            model_type=model_type,
            vocab_size=vocab_size,
            hard_vocab_limit=False,
            character_coverage=character_coverage,
            input_sentence_size=max_sentences,
            shuffle_input_sentence=True,
            pad_id=0,
            unk_id=1,
            bos_id=2,
            eos_id=3,
            user_defined_symbols=[SPECIAL_TOKENS["mask_token"]],
            byte_fallback=True,
            split_digits=True,
            normalization_rule_name="identity",
            num_threads=2,
            minloglevel=2,
        )
    except RuntimeError as err:
        too_small = re.search(r"smaller than required_chars\. (\d+) vs (\d+)", str(err))
        if too_small:
            raise TextAEError(f"tokenizer.vocab_size={vocab_size} is smaller than required for this data: it needs at least "
                              f"{too_small[2]} (special tokens, 256 byte pieces and every character kept); "
                              "raise tokenizer.vocab_size") from err
        raise TextAEError(f"SentencePiece training failed: {' '.join(str(err).split())}") from err
    return spm.SentencePieceProcessor(model_proto=model.getvalue())


def _to_fast(sp: spm.SentencePieceProcessor, model_type: str) -> PreTrainedTokenizerFast:
    """Rebuild a SentencePiece model as a `tokenizers` pipeline with the same pieces and ids.

    Built from the pieces directly rather than through a slow tokenizer class: in transformers
    5.x, ``T5Tokenizer(vocab_file=...)`` silently maps every token to ``<unk>``.
    """
    pieces = [sp.id_to_piece(i) for i in range(sp.get_piece_size())]
    # Special pieces are matched outside the model: as added tokens, or by byte fallback.
    special = set(SPECIAL_TOKENS.values())
    normal = [
        not (sp.is_control(i) or sp.is_byte(i) or sp.is_unknown(i) or sp.is_unused(i) or p in special)
        for i, p in enumerate(pieces)
    ]
    if model_type == "unigram":
        vocab = [(p, sp.get_score(i) if normal[i] else _UNMATCHABLE_SCORE) for i, p in enumerate(pieces)]
        model = Unigram(vocab, unk_id=sp.unk_id(), byte_fallback=True)
    else:
        # SentencePiece BPE merges the adjacent pair whose joined piece scores highest
        # (score = -rank); listing every split of each normal piece in that order reproduces it.
        scored = {p: (sp.get_score(i), i) for i, p in enumerate(pieces) if normal[i]}
        ranked = sorted(
            (-score, i, p[:k], p[k:])
            for p, (score, i) in scored.items()
            for k in range(1, len(p))
            if p[:k] in scored and p[k:] in scored
        )
        merges = [(left, right) for _, _, left, right in ranked]
        vocab_ids = {p: i for i, p in enumerate(pieces)}
        model = BPE(vocab_ids, merges, unk_token=SPECIAL_TOKENS["unk_token"], fuse_unk=True, byte_fallback=True)

    backend = Tokenizer(model)
    backend.pre_tokenizer = _pre_tokenizer()
    # Fuse before Strip: Strip works per token, and only the text's leading "▁" must go.
    backend.decoder = decoders.Sequence(
        [decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse(), decoders.Strip(content=" ", left=1)]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=backend,
        **SPECIAL_TOKENS,
        model_max_length=MODEL_MAX_LENGTH,
        clean_up_tokenization_spaces=False,
        add_bos_token=False,
        add_eos_token=False,
    )


def _pre_tokenizer() -> pre_tokenizers.PreTokenizer:
    """Pieces never span a space (SentencePiece's split_by_whitespace), so encoding word by word as
    "▁word" is exact; splitting on any whitespace run is also the whole normalisation, and is
    faster than a regex normaliser."""
    return pre_tokenizers.Sequence(
        [
            pre_tokenizers.WhitespaceSplit(),
            pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always", split=False),
        ]
    )


def load_tokenizer(path: str | Path) -> PreTrainedTokenizerFast:
    """Load a tokenizer saved with ``save_pretrained``, from local files only."""
    path = Path(path)
    if not (path / "tokenizer.json").is_file():
        raise TextAEError(f"no tokenizer.json in {path}: train one or point to a saved model directory")
    try:
        return PreTrainedTokenizerFast.from_pretrained(path, local_files_only=True)
    except Exception as err:  # invalid JSON, an empty or truncated file, a foreign format: all mean "damaged"
        raise TextAEError(f"cannot load the tokenizer in {path}: {_damage(path, err)}; "
                          "copy the model directory again, or retrain") from err


def _damage(path: Path, err: Exception) -> str:
    """Which tokenizer file is broken and how, for the one-line error."""
    for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        file = path / name
        if not file.is_file():
            continue
        try:
            data = file.read_bytes()
        except OSError as bad:
            return f"{name} cannot be read ({bad.strerror})"
        if not data.strip():
            return f"{name} is empty"
        try:
            json.loads(data.decode("utf-8"))
        except ValueError as bad:
            return f"{name} is not valid JSON ({bad})"
    if isinstance(err, KeyError):
        return f"a tokenizer file has no {err} entry"
    return first_line(err)


def tokenize(texts: Sequence[str], tokenizer: PreTrainedTokenizerFast, max_tokens: int) -> list[list[int]]:
    """Content ids per text, truncated to leave room for EOS within `max_tokens` positions.

    A unigram tokenizer of this module's pipeline encodes through its SentencePiece twin (the same
    pieces and scores in SentencePiece's C++ encoder, several times faster than the Rust one), except
    for texts where the two pipelines differ by design: text that could hold a special token (``<``)
    and text with whitespace other than single spaces or other unprintable characters. Every other
    tokenizer is called directly in Rust: the same ids, without the Python-side batch encoding."""
    texts = list(texts)
    twin = sentencepiece_twin(tokenizer)
    if twin is None:
        encoded = [e.ids for e in tokenizer.backend_tokenizer.encode_batch(texts, add_special_tokens=False)]
    else:
        encoded = twin.encode(texts)
        other = [i for i, text in enumerate(texts) if "<" in text or not text.isprintable()]
        if other:
            rust = tokenizer.backend_tokenizer.encode_batch([texts[i] for i in other], add_special_tokens=False)
            for i, e in zip(other, rust):
                encoded[i] = e.ids
    return [ids[: max_tokens - 1] for ids in encoded]


def sentencepiece_twin(tokenizer: PreTrainedTokenizerFast) -> spm.SentencePieceProcessor | None:
    """A SentencePiece processor that encodes plain text (no ``<``, printable, space-separated) to
    the same ids as `tokenizer`, rebuilt from its vocabulary; None unless `tokenizer` is a unigram
    tokenizer of this module's pipeline: no normaliser, this pre-tokenizer, only the special tokens
    added. Keyed by the tokenizer's serialised form, so a changed tokenizer never meets a stale twin."""
    return _twin(tokenizer.backend_tokenizer.to_str())


@functools.lru_cache(maxsize=4)
def _twin(serialised: str) -> spm.SentencePieceProcessor | None:
    spec = json.loads(serialised)
    model = spec["model"]
    ours = Tokenizer(Unigram())
    ours.pre_tokenizer = _pre_tokenizer()
    if (model["type"] == "Unigram" and model.get("byte_fallback") and spec.get("normalizer") is None
            and spec.get("pre_tokenizer") == json.loads(ours.to_str())["pre_tokenizer"]
            and {t["content"] for t in spec.get("added_tokens", [])} <= set(SPECIAL_TOKENS.values())):
        return _sentencepiece_from_pieces(model["vocab"], model["unk_id"])
    return None


_BYTE_PIECE = re.compile(r"<0x[0-9A-F]{2}>")


def _sentencepiece_from_pieces(vocab: list, unk_id: int) -> spm.SentencePieceProcessor:
    """A SentencePiece unigram model with `vocab`'s pieces, ids and scores (the inverse of `_to_fast`)."""
    from sentencepiece import sentencepiece_model_pb2 as pb

    proto = pb.ModelProto()
    trainer = proto.trainer_spec
    trainer.model_type, trainer.vocab_size, trainer.byte_fallback = pb.TrainerSpec.UNIGRAM, len(vocab), True
    ids = {piece: i for i, (piece, _) in enumerate(vocab)}
    trainer.unk_id = unk_id
    trainer.pad_id, trainer.bos_id, trainer.eos_id = (ids.get(SPECIAL_TOKENS[name], -1) for name in ("pad_token", "bos_token", "eos_token"))
    proto.normalizer_spec.name = "identity"
    proto.normalizer_spec.add_dummy_prefix = True
    proto.normalizer_spec.remove_extra_whitespaces = True
    proto.normalizer_spec.escape_whitespaces = True
    special = set(SPECIAL_TOKENS.values())
    for i, (text, score) in enumerate(vocab):
        piece = proto.pieces.add(piece=text, score=score)
        if i == unk_id:
            piece.type = pb.ModelProto.SentencePiece.UNKNOWN
        elif text == SPECIAL_TOKENS["mask_token"]:
            piece.type = pb.ModelProto.SentencePiece.USER_DEFINED
        elif text in special:
            piece.type = pb.ModelProto.SentencePiece.CONTROL
        elif score <= _UNMATCHABLE_SCORE and _BYTE_PIECE.fullmatch(text):
            piece.type = pb.ModelProto.SentencePiece.BYTE
        elif score <= _UNMATCHABLE_SCORE:
            piece.type = pb.ModelProto.SentencePiece.UNUSED
    return spm.SentencePieceProcessor(model_proto=proto.SerializeToString())


def word_starts(tokenizer: PreTrainedTokenizerFast) -> list[bool]:
    """Per token id: does the token begin a word (a SentencePiece piece starting with ▁)? Special tokens count as boundaries."""
    pieces = tokenizer.convert_ids_to_tokens(list(range(len(tokenizer))))
    return [i < NUM_SPECIAL or p.startswith("\u2581") for i, p in enumerate(pieces)]


def sentence_ends(tokenizer: PreTrainedTokenizerFast) -> list[bool]:
    """Per token id: does the piece end with a sentence's closing mark (. ! ?)? Special tokens do not."""
    pieces = tokenizer.convert_ids_to_tokens(list(range(len(tokenizer))))
    return [i >= NUM_SPECIAL and p.rstrip().endswith((".", "!", "?")) for i, p in enumerate(pieces)]
