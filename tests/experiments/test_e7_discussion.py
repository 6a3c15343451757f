"""E7's answers to doc 003 §4.1's questions come from its record: the word shares, the order of
the block sizes, the heads' verdict against the seeds' spread, and the report prints them."""
import copy
import json
import os

import pytest

from experiments import e7_transformer as e7
from experiments import reproduce

ROOT = os.path.join(os.path.dirname(__file__), "..", "..")
REC = json.load(open(os.path.join(ROOT, "results", "e7.json")))


@pytest.mark.parametrize("sample,vocab,share", [("the king is dead", {"the", "king", "is"}, 0.75),
                                                ("The KING's", {"the", "king's"}, 1.0),
                                                ("", {"a"}, None), ("zzz qqq", {"a"}, 0.0)])
def test_word_share_counts_words_of_the_training_text(sample, vocab, share):
    got = e7.word_share(sample, vocab)
    assert (got != got) if share is None else got == pytest.approx(share)


def _with_samples(rec, by_block):
    """A copy of the record whose block-size runs' samples are ``by_block[T]`` (every seed)."""
    rec = copy.deepcopy(rec)
    for T, text in by_block.items():
        for p in rec["runs"][e7.run_key(T, 4)]["per_seed"]:
            p["sample_after"] = text
    return rec


def test_the_block_size_answer_follows_the_samples():
    corpus = "the king is dead long live the king"
    rising = _with_samples(REC, {2: "xq zz the", 16: "the xq king zz", 32: "the king xq", 64: "the king is dead"})
    line = next(x for x in e7.discussion(rising, corpus) if x.startswith("- (iii)"))
    assert "rises from T=2 to T=64 (33 → 100 %)" in line and "is 100 % at" not in line
    falling = _with_samples(REC, {2: "the king", 16: "the xq", 32: "xq the zz", 64: "xq zz"})
    line = next(x for x in e7.discussion(falling, corpus) if x.startswith("- (iii)"))
    assert "highest at the shortest block, T=2" in line
    assert all(not x.startswith("- (i)") or "%" not in x.split("layout")[0]
               for x in e7.discussion(REC, None))   # no corpus: no word shares


@pytest.mark.parametrize("sd,verdict", [(0.001, "larger than the seeds' spread"), (0.5, "within the seeds' spread")])
def test_the_heads_verdict_weighs_the_last_gap_against_the_seeds(sd, verdict):
    rec = copy.deepcopy(REC)
    for h in e7.HEADS:
        rec["runs"][e7.run_key(32, h)]["final_val_sd"] = sd
    line = next(x for x in e7.discussion(rec, None) if x.startswith("- (iv)"))
    assert verdict in line


@pytest.mark.parametrize("fresh,says", [(True, "drawn anew for each estimate, as the notebook's"),
                                         (False, "drawn once per seed and scored at every evaluation")])
def test_the_report_prints_the_discussion_and_the_protocol(fresh, says):
    """The protocol line says which batches the record's estimates used (a record made before
    ``eval_fresh`` existed scored fixed batches: the difference from the notebook is said)."""
    rec = copy.deepcopy(REC)
    rec["config"]["eval_fresh"] = fresh
    text = "\n".join(reproduce._section(dict(rec, status="ran", title="E7"), "full", "results", "."))
    assert "Discussion (doc 003 §4.1's questions" in text and "(i) The generation against the training data" in text
    assert says in text
