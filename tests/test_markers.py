"""Issue 24: label markers (find, delete) and the cae family that reads text without them."""

from __future__ import annotations

import pytest
import torch

import textae
from textae.edits import choose_edits, whole_markers
from textae.infill import infill
from textae.exemplars import choose, close, nearest
from textae.markers import MarkerTable, _sentences, find_exemplars, find_markers
from textae.transfer import _cut, predict_labels, transfer

from .conftest import STYLED

# Token ids: 0-4 special (4 = <mask>); a word starts at 5, 6, 7, 9, 10; 8 continues a word.
STARTS = [True] * 5 + [True, True, True, False, True, True]
MASK = 4


def test_markers_are_the_words_one_label_has_many_times_more_often():
    rows = [[5, 6, 10]] * 10 + [[5, 7, 10]] * 10 + [[5, 7, 8]] * 5  # 5 and 10 everywhere, 6 only in label 0
    labels = [0] * 10 + [1] * 15
    markers = find_markers(rows, labels, 2, STARTS, max_n=2, ratio=5.0, min_count=3)
    grams = {(v, *g) for v, *g in markers}
    assert (0, 6) in grams and (1, 7) in grams  # each label's own word
    assert not any(g[1:] in ((5,), (10,)) for g in grams)  # shared words mark nothing
    assert (1, 7, 8) in grams  # a word of two pieces is one marker
    assert all(STARTS[g[1]] for g in grams)  # a marker starts a word: never the piece 8 alone
    assert find_markers(rows, labels, 2, STARTS, ratio=50.0, min_count=3) == []  # the knob: a stricter ratio keeps fewer


def test_deleting_markers_leaves_one_mask_per_run_and_counts_each_labels_votes():
    table = MarkerTable([[0, 6], [1, 7, 8], [1, 7]], 2, STARTS)
    assert table.delete([5, 6, 7, 8, 10, 3], MASK) == ([5, MASK, 10, 3], [1, 1])  # 6 then "7 8": one run, one mask
    assert table.delete([5, 7, 10], MASK) == ([5, MASK, 10], [0, 1])
    assert table.delete([5, 10], MASK) == ([5, 10], [0, 0])  # no marker: the text unchanged


def test_a_marker_never_matches_the_start_of_a_longer_word():
    table = MarkerTable([[0, 7]], 2, STARTS)
    assert table.delete([7, 8, 10], MASK) == ([7, 8, 10], [0, 0])  # "7 8" is one word, not the marker 7
    assert table.delete([7, 10], MASK) == ([MASK, 10], [1, 0])


@pytest.fixture(scope="module")
def cae(trained_model, styled_corpus):
    return trained_model("cae", 300, {"label_column": "style"}, corpus=styled_corpus, **{"train.eval_every": 300})


def test_cae_finds_the_markers_hides_them_from_the_encoder_and_transfer_writes_the_other_labels(cae):
    ae = textae.load(cae)
    bottleneck = ae.model.bottleneck
    labels = bottleneck.cfg.labels
    marked = {(labels[v], ae.tokenizer.decode(g).strip()) for v, *g in bottleneck.cfg.markers}
    assert ("calm", ".") in marked and ("loud", "!") in marked, marked
    calm = [t for t, y in STYLED if y == "calm"]
    loud = [t for t, y in STYLED if y == "loud"]
    ids = torch.tensor(ae.token_ids(calm[:1]))
    content, _ = bottleneck.content_input(ids, torch.ones_like(ids))
    assert content[0].tolist()[-2:] == [bottleneck.mask_id, ae.model.config.eos_token_id]  # the closing "." became <mask>
    assert predict_labels(ae, calm + loud) == ["calm"] * len(calm) + ["loud"] * len(loud)  # the markers' vote
    moved = transfer(ae, calm, "loud")
    assert sum(t.endswith("!") for t in moved) >= 6, moved  # the other label's marker
    assert sum(m[:-2] == c[:-2] for m, c in zip(moved, calm)) >= 6, list(zip(calm, moved))  # the content kept
    long = " ".join(calm * 4)  # past the model's positions
    assert len(ae.tokenizer(long)["input_ids"]) > ae.model.config.max_positions
    assert transfer(ae, [long], "loud")[0].endswith(" ".join(calm[-3:]))  # the tail no code holds is kept, not lost


class ScriptedDecoder:
    """A decoder whose greedy guesses are given per step (the same for every row)."""

    def __init__(self, guesses: list[int]):
        self.config = type("Config", (), {"bos_token_id": 2, "eos_token_id": 3, "pad_token_id": 0, "max_positions": 16})
        self.guesses, self.step = guesses, 0

    def decoder_memory(self, code):
        return None

    def decoder_states(self, tokens, start, memory, caches=None):
        self.step = start
        return torch.zeros(len(tokens), 1, 1), caches

    def output_logits(self, hidden, memory):
        guess = self.guesses[self.step] if self.step < len(self.guesses) else 3
        logits = torch.full((len(hidden), 1, 16), -10.0)
        logits[..., guess] = 10.0
        return logits


def test_infill_copies_the_content_and_writes_only_where_words_were_deleted():
    # content: 5 <mask> 6, then the end; the decoder guesses 9 9 then 6 (the next content word), then 7 7 ...
    out = infill(ScriptedDecoder([5, 9, 9, 6, 7, 3]), torch.zeros(1, 1), [[5, MASK, 6, 3]], MASK)
    assert out[0].tolist() == [5, 9, 9, 6, 7, 3]  # 5 copied, the mask filled with 9 9, 6 copied, a short tail, the end
    capped = infill(ScriptedDecoder([5] + [9] * 15), torch.zeros(1, 1), [[5, MASK, 6, 3]], MASK, max_span=2)
    assert capped[0].tolist()[:5] == [5, 9, 9, 6, 9]  # a span stops at max_span; copying goes on
    copied = infill(ScriptedDecoder([8] * 16), torch.zeros(1, 1), [[5, 6, 3]], MASK, max_span=1)
    assert copied[0].tolist() == [8, 5, 6, 8, 3]  # every content word copied; max_span tokens may open and close it


class BigramDecoder:
    """log p(next token | previous token, label): a code (B, 1) holds the label the decoder is told."""

    def __init__(self, logits: torch.Tensor):
        self.config = type("Config", (), {"bos_token_id": 2, "eos_token_id": 3, "pad_token_id": 0, "max_positions": 16})
        self.logits = logits  # (labels, V, V)

    def shift_right(self, labels):
        shifted = torch.cat([torch.full((len(labels), 1), 2), labels[:, :-1]], 1)
        return shifted.masked_fill(shifted.eq(-100), 0)

    def decoder_memory(self, code):
        return code

    def decoder_states(self, tokens, start, memory, caches=None):
        return tokens, caches

    def output_logits(self, hidden, memory):
        return self.logits[memory[:, 0].long()[:, None], hidden]

    def sequence_log_likelihood(self, code, labels):
        logp = torch.log_softmax(self.output_logits(self.shift_right(labels), code), -1)
        return (logp.gather(2, labels.clamp(min=0)[..., None])[..., 0] * labels.ne(-100)).sum(1)


def bigrams(told: dict[tuple[int, int, int], float]) -> torch.Tensor:
    """Two labels' bigram logits over 11 tokens: the path BOS 5 _ 7 EOS likely, plus the given (label, prev, next)."""
    logits = torch.full((2, 11, 11), -4.0)
    logits[:, 2, 5] = logits[:, 6, 7] = logits[:, 9, 7] = logits[:, 10, 7] = logits[:, 7, 3] = 4.0
    for (label, prev, nxt), value in told.items():
        logits[label, prev, nxt] = value
    return logits


def test_edits_put_the_new_labels_marker_where_the_decoder_likes_it_and_the_weight_prefers_what_the_label_explains():
    table = MarkerTable([[0, 6], [1, 9], [1, 10]], 2, STARTS)
    told = {(1, 5, 9): 4.0, (1, 5, 10): 3.0, (0, 5, 9): 4.0}  # 9 fits after 5 whatever the label; 10 only when told label 1
    decoder, code, own = BigramDecoder(bigrams(told)), torch.ones(1, 1), torch.zeros(1, 1)

    def rewrite(weight: float, markers=([9], [10])) -> list[int]:
        return choose_edits(decoder, table, [[5, 6, 7]], [[5, 6, 7]], list(markers), 1, code, own, weight)[0]

    assert rewrite(0.0) == [5, 9, 7]  # the old label's word replaced by the likeliest marker; the other words kept
    assert rewrite(4.0) == [5, 10, 7]  # weighted, the marker the new label explains best against the old one
    assert choose_edits(decoder, table, [[5, 6, 7]], [[5, 10, 7]], [], 1, code, own)[0] == [5, 10, 7]  # no marker: the infilled text
    decoder.logits = bigrams({**told, (1, 5, 6): 6.0})  # the old label's word is now the decoder's favourite ...
    assert rewrite(0.0) == [5, 9, 7]  # ... but a text that still reads as the old label cannot win
    decoder.logits = bigrams({**told, (1, 9, 6): 6.0, (1, 9, 7): -2.0})  # 9 put in before the old marker: the likeliest ...
    assert rewrite(0.0) == [5, 10, 7]  # ... but one marker of each label is a tie, not the new label


def test_edits_put_in_only_whole_markers_not_the_pieces_of_longer_ones():
    assert whole_markers([[9], [9, 10], [6, 9, 10], [10, 6], [5]]) == [[6, 9, 10], [10, 6], [5]]
    assert whole_markers([[9, 10], [10, 9]]) == [[9, 10], [10, 9]]  # overlapping, neither inside the other
    table = MarkerTable([[0, 6], [1, 9], [1, 10]], 2, STARTS)
    decoder = BigramDecoder(bigrams({(1, 5, 9): 4.0, (0, 5, 9): 4.0}))  # 9 fits after 5; 9 10 does not read well
    rewritten = choose_edits(decoder, table, [[5, 6, 7]], [[5, 6, 7]], [[9], [9, 10]], 1, torch.ones(1, 1), torch.zeros(1, 1), 0.0)
    assert rewritten[0] == [5, 9, 10, 7]  # "9" alone is likelier, but it is a piece of the marker "9 10"


def test_a_long_text_is_cut_for_rewriting_where_a_word_starts():
    assert _cut([5, 6, 7, 8, 9], 4, STARTS) == ([5, 6, 7, 8], [9])
    assert _cut([5, 7, 8, 10], 2, STARTS) == ([5], [7, 8, 10])  # never between the pieces of "7 8"
    assert _cut([5, 6], 4, STARTS) == ([5, 6], [])


def test_exemplars_are_sentences_that_lead_for_their_label_and_the_typical_lead_is_the_median():
    table = MarkerTable([[0, 6], [1, 7]], 2, STARTS)
    ends = [False] * 10 + [True]  # token 10 closes a sentence
    rows = [[5, 6, 10, 5, 7, 10], [6, 6, 10, 9], [9, 10], [7, 9, 10]]  # labels 0, 0, 0, 1
    exemplars, leads = find_exemplars(rows, [0, 0, 0, 1], table, ends, per_label=10, min_lead=0)
    assert sorted(map(tuple, exemplars)) == [(0, 5, 6, 10), (0, 6, 6, 10), (1, 7, 9, 10)]  # [5 7 10] leads for 1, [9] for none
    assert leads == [0.0, 1.0]  # label 0's rows lead by 0, 2, 0
    assert len(find_exemplars(rows, [0, 0, 0, 1], table, ends, per_label=1, min_lead=0)[0]) == 2  # at most one a label
    assert find_exemplars(rows, [0, 0, 0, 1], table, ends, per_label=10, min_lead=1)[0] == [[1, 7, 9, 10]]  # kept only where used
    cut = find_exemplars(rows, [0, 0, 0, 1], table, ends, per_label=10, min_lead=0, cut_length=3)[0]
    assert sorted(map(tuple, cut)) == [(0, 5, 6, 10), (0, 6, 6, 10)]  # [7 9 10] fills a row of the cut length: maybe part
    assert _sentences([5, 10, 8, 10, 9], ends, STARTS) == [[5, 10, 8, 10], [9]]  # no cut before a word's second piece


def test_an_exemplar_is_the_nearest_that_makes_the_text_lead_enough_else_the_one_that_leads_most():
    bank = torch.tensor([[1.0, 0.0], [0.6, 0.8], [0.0, 1.0], [0.8, 0.6]])
    assert nearest(torch.tensor([[0.0, 1.0], [1.0, 0.0]]), bank).tolist() == [[2, 1, 3, 0], [0, 3, 1, 2]]  # by cosine
    assert choose([0, 2, 3], needed=2) == 1  # nearest first: 2 is enough
    assert choose([0, 1, 3], needed=4) == 2  # none is: the largest lead
    assert choose([1, 3, 3], needed=9) == 1  # a tie: the nearer
    assert choose([-1, 2], needed=0) == 1 and choose([0, 2], needed=0) == 0  # weight 0 asks only for no lead of another label


def test_an_exemplar_follows_the_text_as_a_sentence_of_its_own():
    assert close("Cant wait") == "Cant wait."  # else "Cant wait Call now!" runs on
    assert close("See you at 5 ") == "See you at 5." and close("Ça va") == "Ça va."
    assert close('He said "go"') == 'He said "go".' and close("(see you)") == "(see you)."
    assert close("Ok lor...") == "Ok lor..." and close("Coming :)") == "Coming :)"  # closed already: as written
    assert close("") == ""


def test_toward_a_label_a_whole_message_carries_transfer_keeps_the_text_and_appends_its_exemplar(cae):
    ae = textae.load(cae)
    bottleneck = ae.model.bottleneck
    assert bottleneck.cfg.typical_leads == [1.0, 1.0]  # one marker a row: "." or "!"
    assert bottleneck.cfg.exemplars == []  # neither label needs them: a marker carries each
    calm = [t for t, y in STYLED if y == "calm"][:4]
    loud = [t for t, y in STYLED if y == "loud"][:4]
    cheers = ["hooray ! hooray ! hooray !", "what a day ! great !"]
    bottleneck.cfg.exemplars = [[v, *ae.tokenizer(c, add_special_tokens=False)["input_ids"]]
                                 for v, c in [(1, cheers[1]), (1, cheers[0]), (0, "so quiet .")]]
    bottleneck.cfg.typical_leads = [1.0, 2.0]  # loud is carried by a whole message now; calm by a marker
    moved = transfer(ae, calm, "loud", label_weight=2.0)  # asks for the typical lead, 2
    assert moved == [f"{c} {cheers[0]}" for c in calm]  # only three "!" outvote the text's "." by two
    def content(texts: list[str]) -> torch.Tensor:
        return torch.nn.functional.normalize(bottleneck.split(torch.as_tensor(ae.encode(texts)))[0], dim=-1)

    nearer = cheers[int((content(calm[:1]) @ content(cheers).T).argmax())]
    assert transfer(ae, calm[:1], "loud", label_weight=0.0) == [f"{calm[0]} {nearer}"]  # both lead enough: the nearer
    back = transfer(ae, loud, "calm")
    assert all(m.endswith(" .") and "quiet" not in m for m in back), back  # calm still edits
