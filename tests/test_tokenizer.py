import random
import time

import pytest
from tokenizers import normalizers

from textae.errors import TextAEError
from textae.tokenizer import (
    MODEL_MAX_LENGTH,
    NUM_SPECIAL,
    SPECIAL_TOKENS,
    _to_fast,
    _train_sentencepiece,
    load_tokenizer,
    sentencepiece_twin,
    tokenize,
    train_tokenizer,
)

TINY = [
    "The cat sat on the mat.",
    "In 2017, 3.5% of 1,000 people voted.",
    "Café über 中文 😀",
    "Hello world!",
    "A quick brown fox.",
    "Jumps over the lazy dog.",
    "Numbers like 42 and 7.",
    "End.",
]

ROUND_TRIP = [
    "In 2017, 3.5% of 1,000 people voted.",
    "Café, naïve über-cool Zoë.",
    "中文 and 日本語 text, plus emoji 😀🎉.",
    'Punctuation: (yes) — "quoted", it\'s [fine]; ok? no! a/b & c...',
    "Spaces before marks stay : a . b , c ' s",
    "Unseen scripts: Ελληνικά, 한국어, עברית, ﬁ ligature, Ångström.",
    "$12.50 at 10:30 a.m. on 2024-01-31 #42 @user",
]


def make_corpus(n: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    subjects = ["The minister", "A small dog", "Our team", "The company", "Müller", "The café owner", "Zoë", "Scientists"]
    verbs = ["announced", "rejected", "discussed", "reported", "built", "sold", "watched", "visited", "ignored"]
    objects = ["a new plan", "the results", "three houses", "the budget", "the 中文 article", "naïve proposals", "birds"]
    tails = ["on Monday.", "in 2017.", "for $3.5 million.", "after 12 hours!", "— again.", "(see <ref 0x4>).", "at 10:30."]
    return [
        f"{rng.choice(subjects)} {rng.choice(verbs)} {rng.choice(objects)} {rng.choice(tails)}" for _ in range(n)
    ]


CORPUS = make_corpus(400, seed=0)


@pytest.fixture(scope="module", params=["unigram", "bpe"])
def tok(request):
    return train_tokenizer(CORPUS, vocab_size=1000, model_type=request.param)


def test_special_token_ids(tok):
    for expected_id, (name, token) in enumerate(SPECIAL_TOKENS.items()):
        assert getattr(tok, name) == token
        assert getattr(tok, f"{name}_id") == expected_id
        assert tok.convert_tokens_to_ids(token) == expected_id
    assert tok("<mask>")["input_ids"] == [4]
    assert sorted(tok.all_special_ids) == list(range(NUM_SPECIAL))  # the noise functions' default boundary


def test_encoding_adds_no_special_tokens(tok):
    ids = tok("The minister announced the results.")["input_ids"]
    assert ids and min(ids) >= len(SPECIAL_TOKENS)


@pytest.mark.parametrize("text", ROUND_TRIP)
def test_round_trip(tok, text):
    ids = tok(text)["input_ids"]
    assert tok.unk_token_id not in ids  # byte fallback covers unseen characters
    assert tok.decode(ids, skip_special_tokens=True) == text


def test_batch_round_trip_held_out(tok):
    texts = make_corpus(200, seed=1)
    decoded = tok.batch_decode(tok(texts)["input_ids"], skip_special_tokens=True)
    assert decoded == texts


def test_text_spelling_a_byte_piece_stays_text(tok):
    # Byte pieces are named "<0x41>"; a unigram lattice must not read that literal text as one.
    text = "see <0x41> and <0x4>"
    assert tok.decode(tok(text)["input_ids"]) == text


def test_whitespace_is_normalised_to_single_spaces(tok):
    ids = tok("  Hello \t world\n\nagain\u00a0 now  ")["input_ids"]
    assert tok.decode(ids) == "Hello world again now"


def test_digits_are_split(tok):
    tokens = tok.convert_ids_to_tokens(tok("In 2017 and 1000000")["input_ids"])
    pieces = [t for t in tokens if not t.startswith("<0x")]  # byte pieces spell digits in hex
    assert all(sum(ch.isdigit() for ch in t) <= 1 for t in pieces), tokens
    assert sum(ch.isdigit() for t in pieces for ch in t) == 11


@pytest.mark.parametrize("model_type", ["unigram", "bpe"])
def test_matches_sentencepiece(model_type):
    sp = _train_sentencepiece(
        iter(CORPUS), vocab_size=1000, model_type=model_type, character_coverage=0.9995, max_sentences=10**6, seed=0
    )
    fast = _to_fast(sp, model_type)
    texts = make_corpus(300, seed=2) + ROUND_TRIP
    assert fast(texts)["input_ids"] == [sp.encode(t) for t in texts]


# Texts where SentencePiece's own encoder and the Rust pipeline part ways (special tokens matched
# in text, whitespace other than single spaces), beside plain text in many scripts.
TWIN_EDGES = ROUND_TRIP + [
    "a<mask>b and <s> or </s> <pad>", "tab\tand  two spaces", "no-break\u00a0space", "line\u2028separator",
    "zero\u200bwidth", " lead and trail ", "", "unseen ☃ ⅷ ᚠ 𝔘 and \x07 bell", "2nd 1,234.5 x9y",
]


def test_bulk_tokenize_gives_the_tokenizer_s_own_ids(tok):
    """The corpus tokenizer's fast path (the SentencePiece twin of a unigram tokenizer) must give
    exactly the ids the saved tokenizer gives at inference, on every text."""
    texts = make_corpus(300, seed=3) + TWIN_EDGES
    expected = [tok(t)["input_ids"] for t in texts]
    assert tokenize(texts, tok, 10**6) == expected
    assert tokenize(texts, tok, 4) == [ids[:3] for ids in expected]
    if sentencepiece_twin(tok) is not None:  # where the twin alone would differ, tokenize must not use it
        assert [list(ids) for ids in sentencepiece_twin(tok).encode(texts)] != expected


def test_only_a_unigram_tokenizer_of_this_pipeline_has_a_sentencepiece_twin(tok, tmp_path):
    twin = sentencepiece_twin(tok)
    assert (twin is not None) == (tok.backend_tokenizer.to_str().count('"type":"Unigram"') == 1)
    tok.save_pretrained(tmp_path)
    loaded = load_tokenizer(tmp_path)
    assert (sentencepiece_twin(loaded) is None) == (twin is None)
    loaded.backend_tokenizer.normalizer = normalizers.Lowercase()  # another pipeline: the Rust encoder only
    assert sentencepiece_twin(loaded) is None
    assert tokenize(["ABC Def"], loaded, 100) == [loaded("ABC Def")["input_ids"]]


def test_save_and_load_give_identical_ids(tok, tmp_path):
    tok.save_pretrained(tmp_path)
    assert (tmp_path / "tokenizer.json").is_file()
    loaded = load_tokenizer(tmp_path)
    texts = ROUND_TRIP + make_corpus(50, seed=3)
    assert loaded(texts)["input_ids"] == tok(texts)["input_ids"]
    assert loaded.all_special_ids == tok.all_special_ids
    assert loaded.model_max_length == MODEL_MAX_LENGTH
    assert loaded.decode(loaded(ROUND_TRIP[0])["input_ids"]) == ROUND_TRIP[0]


def test_load_without_tokenizer_json_is_a_user_error(tmp_path):
    with pytest.raises(TextAEError, match="tokenizer.json"):
        load_tokenizer(tmp_path)


@pytest.mark.parametrize("model_type", ["unigram", "bpe"])
def test_tiny_corpus_trains_with_smaller_vocab(model_type):
    tok = train_tokenizer(TINY, vocab_size=8000, model_type=model_type)
    assert 261 < len(tok) < 8000
    for text in TINY + ROUND_TRIP:
        assert tok.decode(tok(text)["input_ids"], skip_special_tokens=True) == text


def test_training_is_deterministic():
    a = train_tokenizer(CORPUS, vocab_size=600, seed=0)
    b = train_tokenizer(CORPUS, vocab_size=600, seed=0)
    assert a.get_vocab() == b.get_vocab()


def test_truncation_uses_model_max_length(tok):
    ids = tok(" ".join(["word"] * 2000), truncation=True)["input_ids"]
    assert len(ids) == MODEL_MAX_LENGTH


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"texts": CORPUS, "model_type": "wordpiece"}, "model_type"),
        ({"texts": ["", "  \n"]}, "no non-empty texts"),
        ({"texts": CORPUS, "vocab_size": 100}, "smaller than required"),
    ],
)
def test_bad_arguments_raise_user_errors(kwargs, message):
    with pytest.raises(TextAEError, match=message):
        train_tokenizer(**kwargs)


def test_batch_encoding_is_fast(tok):
    assert tok.is_fast
    texts = make_corpus(20_000, seed=4)
    start = time.perf_counter()
    tok(texts)
    # A few hundred ms on 2 busy cores; a per-sentence Python path would take far longer.
    assert time.perf_counter() - start < 10
