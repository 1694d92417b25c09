import pytest
import torch

from mechscope.data.multimodal import (CONCEPT_NAMES, CONCEPTS, COLOURS, GROUPS, NO_WORD, OTHER_TEXT, STYLES,
                                       TEMPLATES, MultimodalDataset, MultimodalWorld, caption, class_prompts,
                                       concept_captions, concept_id, group_of, parse_caption, render, sample)
from mechscope.data.shapes import SHAPE_CLASSES
from mechscope.errors import MechscopeError


@pytest.fixture(scope="module")
def batch():
    return sample(range(200), seed=0)


def test_items_are_functions_of_seed_and_index(batch):
    again = sample([7, 3], seed=0)
    assert torch.equal(again.images[0], batch.images[7]) and torch.equal(again.images[1], batch.images[3])
    assert again.captions == [batch.captions[7], batch.captions[3]]
    for k in ("style", "shape", "colour", "word", "template"):
        assert getattr(again, k).tolist() == [getattr(batch, k)[7], getattr(batch, k)[3]]
    assert not torch.equal(sample(range(8), seed=1).images, batch.images[:8])


def test_render_of_the_sampled_labels_gives_the_sampled_items(batch):
    idx = list(range(40))
    styles = [STYLES[int(s)] for s in batch.style[idx]]
    shapes = [SHAPE_CLASSES[int(s)] if s >= 0 else None for s in batch.shape[idx]]
    words = [CONCEPT_NAMES[int(w)] if STYLES[int(s)] == "word" else None
             for w, s in zip(batch.word[idx], batch.style[idx])]
    colours = [COLOURS[int(c)] if c >= 0 else None for c in batch.colour[idx]]
    again = render(shapes, colours, styles, words, seed=0, indices=idx)
    assert torch.equal(again.images, batch.images[:40]) and again.captions == batch.captions[:40]


def test_labels_are_consistent_and_every_style_and_concept_occurs(batch):
    assert batch.images.shape == (200, 3, 64, 64) and float(batch.images.min()) >= 0 and float(batch.images.max()) <= 1
    assert set(batch.style.tolist()) == set(range(len(STYLES)))
    word_style = batch.style == STYLES.index("word")
    assert ((batch.shape == -1) == word_style).all()
    assert ((batch.colour == -1) == (batch.style == STYLES.index("sketch"))).all()
    writes = word_style | (batch.style == STYLES.index("picture+word"))
    assert ((batch.word == NO_WORD) == ~writes).all()
    pw = batch.style == STYLES.index("picture+word")
    assert (batch.word[pw] == batch.shape[pw]).all()           # the matching word, in sample
    kinds = {CONCEPTS[int(w)][1] for w in batch.word[word_style]}
    assert kinds == {"shape", "colour", "group"}
    assert len(CONCEPTS) == 20 and sorted(sum(GROUPS.values(), ())) == sorted(SHAPE_CLASSES)


def test_captions_parse_back_to_their_labels(batch):
    for i, text in enumerate(batch.captions):
        fields = parse_caption(text)
        assert fields["style"] == STYLES[int(batch.caption_style[i])]
        assert TEMPLATES[fields["style"]].index(fields["template"]) == int(batch.template[i])
        if "shape" in fields:
            assert fields["shape"] == SHAPE_CLASSES[int(batch.shape[i])]
        if "group" in fields:
            assert fields["group"] == group_of(SHAPE_CLASSES[int(batch.shape[i])])
        if "colour" in fields:
            assert fields["colour"] == COLOURS[int(batch.colour[i])]
        if "word" in fields:
            assert fields["word"] == CONCEPT_NAMES[int(batch.word[i])]


def _ink(img: torch.Tensor) -> torch.Tensor:
    """Pixels ``[H, W]`` far from the image's median colour."""
    return (img - img.flatten(1).median(1).values[:, None, None]).abs().sum(0) > 0.25


def test_word_images_have_ink_where_the_text_is_and_nowhere_else():
    flat = MultimodalWorld(backgrounds=("flat",), pixel_noise=0.0)     # so that every off-background pixel is ink
    same_item = [render(None, "blue", "word", w, seed=0, indices=[1], world=flat).images[0] for w in ("polygon", "arc")]
    inks = [_ink(img) for img in same_item]
    assert int(inks[0].sum()) > int(inks[1].sum()) > 15              # more letters, more ink
    for ink in inks:
        rows = ink.any(1).nonzero()[:, 0]
        assert int(rows.max() - rows.min()) < 26                       # one line of text, at most 20 px high
        assert float(ink.float().mean()) < 0.25
    items = sample(range(60), seed=1)
    assert all((t is None) == (int(w) == NO_WORD) for t, w in zip(items.texts, items.word))


def test_sketches_have_no_fill_and_dark_strokes_on_light_paper():
    pics = render(["disc", "star", "polygon"], "red", "picture", seed=0, indices=[0, 1, 2])
    sketches = render(["disc", "star", "polygon"], None, "sketch", seed=0, indices=[0, 1, 2])
    lum = sketches.images.mean(1)
    paper = lum.flatten(1).median(1).values
    assert (paper > 0.8).all()
    dark = (lum < paper[:, None, None] - 0.3).float().flatten(1).mean(1)
    assert (dark > 0.005).all() and (dark < 0.2).all()
    # a filled disc covers far more pixels than its sketch's strokes; the sketch's centre region is not solid ink
    pic_ink = (pics.images - pics.images.flatten(2).median(2).values[..., None, None]).abs().sum(1) > 0.2
    assert float(pic_ink[0].float().mean()) > 2 * float(dark[0])
    # disc sketch (contour + hatching) and ring sketch (two contours) differ from each other
    dr = render(["disc", "ring"], None, "sketch", seed=0, indices=[4, 4]).images
    assert float((dr[0] - dr[1]).abs().mean()) > 0.01


def test_typographic_attack_writes_any_word_and_free_text():
    attack = render("disc", "red", "picture+word", word="star", seed=0, indices=[3])
    assert attack.word.tolist() == [concept_id("star")] and attack.shape.tolist() == [0]
    assert "star" in attack.captions[0] and "disc" in attack.captions[0]
    control = render("disc", "red", "picture+word", text="xqzv", seed=0, indices=[3])
    assert control.word.tolist() == [OTHER_TEXT] and control.texts == ["xqzv"]
    matching = render("disc", "red", "picture+word", seed=0, indices=[3])
    assert matching.word.tolist() == [concept_id("disc")]
    plain = render("disc", "red", "picture", seed=0, indices=[3]).images
    assert not torch.equal(attack.images, plain) and not torch.equal(attack.images, control.images)


def test_caption_helpers():
    assert class_prompts("picture")[:2] == ["a picture of a disc", "a picture of a ring"]
    assert class_prompts("word")[8] == "the word star"
    caps = concept_captions("star", "picture")
    assert "a red star" in caps and "a pointed star" in caps and all("star" in c for c in caps)
    assert "the word round" in concept_captions("round", "word")
    assert "a red round shape" in concept_captions("red", "picture")
    assert caption("sketch", 0, shape="ring") == "a drawing of a ring"
    assert caption("picture", 0, shape="arc", colour="orange") == "an orange arc"
    assert parse_caption("an orange arc") == {"style": "picture", "template": "a {colour} {shape}", "shape": "arc",
                                              "colour": "orange"}


def test_bad_input_names_what_is_valid():
    with pytest.raises(MechscopeError, match="disc"):
        render("sphere", "red", "picture")
    with pytest.raises(MechscopeError, match="orange"):
        render("disc", "magenta", "picture")
    with pytest.raises(MechscopeError, match="picture\\+word"):
        render("disc", "red", "painting")
    with pytest.raises(MechscopeError, match="round"):
        render(None, "red", "word", "sphere")
    with pytest.raises(MechscopeError, match="writes nothing"):
        render("disc", "red", "picture", "star")
    with pytest.raises(MechscopeError, match="draws a shape"):
        render(None, "red", "picture")
    with pytest.raises(MechscopeError, match="valid: 0..5"):
        caption("picture", 9, shape="disc", colour="red")
    with pytest.raises(MechscopeError, match="templates"):
        parse_caption("a cat on a mat")
    with pytest.raises(MechscopeError, match="printable"):
        render("disc", "red", "picture+word", text="two words")
    with pytest.raises(MechscopeError, match="style_probs"):
        MultimodalWorld(style_probs=(1, 0, 0))
    with pytest.raises(MechscopeError, match="out of range"):
        MultimodalDataset(5).sample([5])


def test_dataset_batches_and_other_sizes():
    ds = MultimodalDataset(10, seed=4, world=MultimodalWorld(size=32))
    chunks = list(ds.batches(4))
    assert [idx for idx, _ in chunks] == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]
    assert chunks[0][1].images.shape == (4, 3, 32, 32)


def test_a_labelled_pictures_caption_names_its_label_with_the_worlds_probability():
    idx = range(400)
    always = sample(idx, seed=2, world=MultimodalWorld(caption_names_label=1.0))
    half = sample(idx, seed=2)
    pw = always.style == STYLES.index("picture+word")
    assert (always.caption_style == always.style).all()                  # the first recipe's captions
    assert torch.equal(always.images, half.images)                       # the mix changes captions only
    named = half.caption_style[pw] == STYLES.index("picture+word")
    assert 0.3 < named.float().mean() < 0.7 and int(pw.sum()) > 30
    for i in torch.nonzero(pw).flatten().tolist():
        text = half.captions[i]
        names = half.caption_style[i] == STYLES.index("picture+word")
        assert (half.texts[i] in text.split()[-3:] and "word" in text or "labelled" in text) == bool(names)
    other = ~pw
    assert [half.captions[i] for i in torch.nonzero(other).flatten().tolist()] == \
        [always.captions[i] for i in torch.nonzero(other).flatten().tolist()]
    with pytest.raises(MechscopeError, match="caption_names_label"):
        MultimodalWorld(caption_names_label=1.5)
