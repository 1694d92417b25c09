"""The multimodal world's concepts and captions: names, groups, the caption grammar, zero-shot prompts.

``CONCEPTS`` (``(name, kind)``; a concept's id is its index there): the ten shape classes of the shapes world
(kind ``shape``), seven named colours (``COLOURS``, kind ``colour``) and three superordinate groups of shapes
(``GROUPS``, kind ``group``).  ``TEMPLATES`` gives each style's captions (fields ``{shape} {colour} {group}
{word}``; "a" becomes "an" before a vowel); ``caption`` fills one, ``parse_caption`` reads its fields back,
``concept_captions(concept, style)`` lists every caption a concept appears in, and ``class_prompts(style)`` gives
the zero-shot prompts (``PROMPTS``).  The images are drawn by ``mechscope.data.multimodal``.

Example::

    >>> from mechscope.data.concepts import caption, class_prompts, parse_caption
    >>> caption("picture", 1, shape="arc", colour="orange")
    'a photo of an orange arc'
    >>> parse_caption("a drawing of a star")
    {'style': 'sketch', 'template': 'a drawing of a {shape}', 'shape': 'star'}
    >>> class_prompts("word")[:3]
    ['the word disc', 'the word ring', 'the word arc']
"""

from __future__ import annotations

import functools
import itertools
import re
from collections.abc import Iterator, Sequence

import numpy as np

from mechscope.data.shapes import SHAPE_CLASSES
from mechscope.errors import MechscopeError, UnknownNameError

__all__ = [
    "STYLES", "COLOURS", "GROUPS", "CONCEPTS", "CONCEPT_NAMES", "TEMPLATES", "PROMPTS", "NO_WORD", "OTHER_TEXT",
    "caption", "parse_caption", "concept_captions", "class_prompts", "group_of", "concept_id",
]

STYLES = ("picture", "sketch", "word", "picture+word")
COLOURS = ("red", "orange", "yellow", "green", "blue", "purple", "grey")
GROUPS: dict[str, tuple[str, ...]] = {
    "round": ("disc", "ring", "spiral", "arc"),
    "pointed": ("star", "angle", "polygon", "cross"),
    "linear": ("line", "wave"),
}
CONCEPTS: tuple[tuple[str, str], ...] = (
    tuple((s, "shape") for s in SHAPE_CLASSES) + tuple((c, "colour") for c in COLOURS)
    + tuple((g, "group") for g in GROUPS))
CONCEPT_NAMES = tuple(name for name, _ in CONCEPTS)
NO_WORD, OTHER_TEXT = -1, -2

TEMPLATES: dict[str, tuple[str, ...]] = {
    "picture": ("a {colour} {shape}", "a photo of a {colour} {shape}", "a picture of a {shape}", "a {shape}",
                "a {group} {shape}", "a {colour} {group} shape"),
    "sketch": ("a drawing of a {shape}", "a sketch of a {shape}", "a line drawing of a {group} shape"),
    "word": ("the word {word}", "the text {word}", "the word {word} in {colour}", "a sign that says {word}"),
    "picture+word": ("a {colour} {shape} with the word {word} on it", "a photo of a {shape} labelled {word}"),
}
# Zero-shot prompts per style: the ten shapes' classes (``class_prompts``); for ``word``, the written name.
PROMPTS = {"picture": "a picture of a {shape}", "sketch": "a drawing of a {shape}", "word": "the word {shape}",
           "picture+word": "a picture of a {shape}"}



# ------------------------------------------------------------------------------------------------ names


def _unknown(kind: str, name: object, valid: Sequence[str]) -> UnknownNameError:
    return UnknownNameError(f"unknown {kind} {name!r}; valid {kind}s: {', '.join(valid)}")


def _index(kind: str, value: object, valid: Sequence[str]) -> int:
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        if 0 <= int(value) < len(valid):
            return int(value)
        raise _unknown(f"{kind} id", value, [f"0..{len(valid) - 1}"] + list(valid))
    if isinstance(value, str) and value in valid:
        return valid.index(value)
    raise _unknown(kind, value, valid)


def concept_id(name: str) -> int:
    """The id of a concept (its index in ``CONCEPTS``); unknown names raise, naming the valid ones."""
    return _index("concept", name, CONCEPT_NAMES)


def group_of(shape: str) -> str:
    """The superordinate group of a shape class (``GROUPS``)."""
    _index("shape", shape, SHAPE_CLASSES)
    return next(g for g, members in GROUPS.items() if shape in members)


# ------------------------------------------------------------------------------------------------ captions


def caption(style: str, template: int | str, *, shape: str | None = None, colour: str | None = None,
            word: str | None = None) -> str:
    """The caption of ``template`` (an index into ``TEMPLATES[style]`` or the template string itself) with its
    fields filled; ``{group}`` comes from ``shape``.  A field the template needs and that is missing raises."""
    _index("style", style, STYLES)
    options = TEMPLATES[style]
    if isinstance(template, str):
        if template not in options:
            raise _unknown(f"{style} template", template, options)
        text = template
    else:
        text = options[_template_index(style, template)]
    values = {"shape": shape, "colour": colour, "word": word,
              "group": group_of(shape) if shape is not None else None}
    missing = [k for k in values if "{" + k + "}" in text and values[k] is None]
    if missing:
        raise MechscopeError(f"template {text!r} needs {missing}; pass them")
    return _articles(text.format(**{k: v for k, v in values.items() if v is not None}))


def _articles(text: str) -> str:
    """"a" becomes "an" before a vowel ("an arc", "an orange star")."""
    return re.sub(r"\ba (?=[aeiou])", "an ", text)


def _template_index(style: str, template: int) -> int:
    n = len(TEMPLATES[style])
    if not isinstance(template, (int, np.integer)) or not 0 <= int(template) < n:
        raise MechscopeError(f"unknown {style} template {template!r}; valid: 0..{n - 1} = {list(TEMPLATES[style])}")
    return int(template)


@functools.lru_cache(maxsize=None)
def _caption_patterns() -> tuple[tuple[str, str, re.Pattern], ...]:
    alternatives = {"shape": SHAPE_CLASSES, "colour": COLOURS, "group": tuple(GROUPS)}
    out = []
    for style, templates in TEMPLATES.items():
        for t in templates:
            pattern = re.escape(t).replace("\\ ", " ")
            for k, names in alternatives.items():
                pattern = pattern.replace(re.escape("{" + k + "}"), f"(?P<{k}>{'|'.join(names)})")
            pattern = pattern.replace(re.escape("{word}"), r"(?P<word>[!-~]+)")
            pattern = re.sub(r"\ba ", "an? ", pattern)
            out.append((style, t, re.compile(pattern)))
    return tuple(out)


def parse_caption(text: str) -> dict[str, str]:
    """The fields of a caption of this world: ``style``, ``template`` and whichever of ``shape``, ``colour``,
    ``group``, ``word`` it names.  A text no template produces raises."""
    for style, template, pattern in _caption_patterns():
        m = pattern.fullmatch(text)
        if m:
            return {"style": style, "template": template, **m.groupdict()}
    raise MechscopeError(f"{text!r} is not a caption of the multimodal world; its templates are {TEMPLATES}")


def _field_sets(style: str) -> Iterator[dict[str, str]]:
    """Every combination of fields a caption of ``style`` can have in ``sample``."""
    if style == "picture":
        for s, c in itertools.product(SHAPE_CLASSES, COLOURS):
            yield {"shape": s, "colour": c}
    elif style == "sketch":
        for s in SHAPE_CLASSES:
            yield {"shape": s}
    elif style == "word":
        for w, c in itertools.product(CONCEPT_NAMES, COLOURS):
            yield {"word": w, "colour": c}
    else:
        for s, c in itertools.product(SHAPE_CLASSES, COLOURS):
            yield {"shape": s, "colour": c, "word": s}


def concept_captions(concept: str, style: str) -> list[str]:
    """Every distinct caption of ``style`` that names ``concept`` (a shape, colour or group name, as itself or
    written as a word), in template order: e.g. the text side of a concept for the multimodal analyses."""
    concept_id(concept)
    _index("style", style, STYLES)
    out: dict[str, None] = {}
    for template in TEMPLATES[style]:
        for fields in _field_sets(style):
            fields = {**fields, "group": group_of(fields["shape"]) if "shape" in fields else None}
            used = {k: v for k, v in fields.items() if "{" + k + "}" in template}
            if concept in used.values():
                out[_articles(template.format(**used))] = None
    return list(out)


def class_prompts(style: str = "picture", classes: Sequence[str] = SHAPE_CLASSES) -> list[str]:
    """The zero-shot prompts of ``classes`` (default the ten shapes) for images of ``style`` (``PROMPTS``)."""
    _index("style", style, STYLES)
    for c in classes:
        concept_id(c)
    return [PROMPTS[style].replace("{shape}", c) for c in classes]
