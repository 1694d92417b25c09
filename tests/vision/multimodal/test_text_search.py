import itertools

import pytest
import torch

import mechscope
from mechscope.errors import MechscopeError
from mechscope.vision.multimodal.organism import unit_text_search
from mechscope.vision.multimodal.text_search import search_text, tokenizer_words

WORDS = ["red", "blue", "star", "ring", "wave", "the", "a"]


def bag_of_words(texts):
    """Each text as the sum of one-hot word vectors: the best text for a direction is knowable by brute force."""
    out = torch.zeros(len(texts), len(WORDS))
    for i, t in enumerate(texts):
        for w in t.split():
            out[i, WORDS.index(w)] += 1.0
    return out


def test_beam_search_finds_the_brute_force_optimum_of_a_bag_of_words_encoder():
    torch.manual_seed(0)
    for _ in range(5):
        d = torch.randn(len(WORDS))
        every = [" ".join(p) for n in (1, 2, 3) for p in itertools.product(WORDS, repeat=n)]
        cos = torch.nn.functional.normalize(bag_of_words(every), dim=1) @ torch.nn.functional.normalize(d, dim=0)
        best = float(cos.max())
        r = search_text(bag_of_words, d, WORDS, max_words=3, beam=len(WORDS) ** 2, k=3)
        assert float(r.scores[0]) == pytest.approx(best, abs=1e-6)
        assert r.scores.tolist() == sorted(r.scores.tolist(), reverse=True)
        assert all(len(t.split()) <= 3 for t in r.texts)


def test_the_search_never_scores_below_its_seeds_or_single_words():
    d = torch.tensor([0.0, 0.0, 1.0, 1.0, 0.0, 0.0, 0.0])
    r = search_text(bag_of_words, d, ["red", "blue"], max_words=2, beam=2, seeds=["star ring"])
    assert r.texts[0] == "star ring" and float(r.scores[0]) == pytest.approx(1.0)


def test_bad_input_is_refused():
    with pytest.raises(MechscopeError, match="non-zero"):
        search_text(bag_of_words, torch.zeros(7), WORDS)
    with pytest.raises(MechscopeError, match="vocabulary"):
        search_text(bag_of_words, torch.ones(7), ["", " "])
    with pytest.raises(MechscopeError, match="max_words"):
        search_text(bag_of_words, torch.ones(7), WORDS, max_words=0)
    with pytest.raises(MechscopeError, match=r"\[T, 3\]"):
        search_text(bag_of_words, torch.ones(3), WORDS)


@pytest.fixture(scope="module")
def clip():
    return mechscope.load("shapes-clip", device="cpu")


def test_tokenizer_words_are_the_word_initial_tokens(clip):
    words = tokenizer_words(clip.tokenizer)
    assert {"star", "ring", "red", "word", "picture"} <= set(words)
    assert all(w.isalpha() and w.islower() and len(w) >= 2 for w in words)
    assert all(clip.tokenizer.decode(clip.tokenizer.encode(" " + w)).strip() == w for w in words)


def test_on_the_organism_free_text_beats_the_grammars_best_caption(clip):
    """Seeded with the ranked captions, the search can only match or beat them; that it beats them by a margin
    on most units says the text tower responds to strings no caption template writes."""
    gains = []
    for unit in range(0, 64, 8):
        r = unit_text_search(clip, f"image_embed:{unit}", max_words=3, beam=4, k=3)
        assert r["searched"][0]["score"] >= r["ranked"][0]["score"] - 1e-6
        gains.append(r["searched"][0]["score"] - r["ranked"][0]["score"])
        assert len(r["ranked"]) == len(r["searched"]) == 3
    assert sum(g > 0.01 for g in gains) >= len(gains) // 2


def test_unit_text_search_refuses_bad_units(clip):
    with pytest.raises(MechscopeError, match="0..127"):
        unit_text_search(clip, "mixed4b:999")
    with pytest.raises(KeyError, match="unknown layer"):
        unit_text_search(clip, "nolayer:1")
    with pytest.raises(MechscopeError, match="expected a unit"):
        unit_text_search(clip, "mixed4b")
