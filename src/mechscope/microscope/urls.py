"""Where each page of the Microscope's site lives, and how names become URL path segments.

Site layout (every URL relative to the site root; every link in a page relative to that page, so the site works
from ``file://`` and any static host)::

    index.html                          the models and their layers, with a client-side unit search
    <model>/<layer>/index.html          a layer: the grid of its units' feature visualizations
    <model>/<layer>/<channel>.html      a unit: all its figures, examples, statistics and circuit links
    png/ab/<sha256>.png                 the store's PNGs, under the same content-addressed names

Names become path segments through ``slug``: letters, digits, ``-`` and ``.`` are kept, every other byte of the
UTF-8 name is written ``_XX`` (``_`` itself included, a leading ``.`` too), so slugs are injective, URL-safe
without further quoting, and never ``..``; ``png`` / ``index.html`` are escaped so that they cannot clash with the
site's own files.

Example::

    >>> unit_url("inceptionv1", "mixed3b", 379)
    'inceptionv1/mixed3b/379.html'
    >>> slug("<b>x</b>"), slug("blocks.0_attn"), slug("..")
    ('_3Cb_3Ex_3C_2Fb_3E', 'blocks.0_5Fattn', '_2E.')
    >>> relative_url(unit_url("m", "conv1", 3), unit_url("m", "conv2", 7))
    '../../m/conv2/7.html'
"""

from __future__ import annotations

import re
import string
from typing import Any

from mechscope.errors import MechscopeError

_SAFE = frozenset(string.ascii_letters + string.digits + "-.")
_RESERVED = frozenset({"png", "index.html"})  # top-level names of the site itself
_PNG_PATH = re.compile(r"png/([0-9a-f]{2})/([0-9a-f]{64})\.png")


def slug(name: str) -> str:
    """A file- and URL-safe, injective path segment for ``name`` (see the module docstring)."""
    out = []
    for i, ch in enumerate(str(name)):
        if ch in _SAFE and not (i == 0 and ch == "."):
            out.append(ch)
        else:
            out.extend(f"_{b:02X}" for b in ch.encode("utf-8"))
    s = "".join(out)
    if not s:
        return "_"  # not a valid ``_XX``, so no other name gives it
    if s.lower() in _RESERVED:
        s = f"_{ord(s[0]):02X}{s[1:]}"
    return s


def index_url() -> str:
    """The site's front page, relative to the site root."""
    return "index.html"


def layer_url(model: str, layer: str) -> str:
    """The page of a layer, relative to the site root."""
    return f"{slug(model)}/{slug(layer)}/index.html"


def unit_url(model: str, layer: str, channel: int) -> str:
    """The page of one unit, relative to the site root (``channel >= 0``; layer-wide figures have no page)."""
    if isinstance(channel, bool) or not isinstance(channel, int) or channel < 0:
        raise MechscopeError(f"a unit page needs a channel >= 0, not {channel!r}")
    return f"{slug(model)}/{slug(layer)}/{channel}.html"


def png_url(rel: str) -> str:
    """The site URL of a store PNG path ``png/ab/<sha256>.png`` (the same path); other paths are refused."""
    if not is_png_path(rel):
        raise MechscopeError(f"{rel!r} is not a store PNG path png/ab/<sha256>.png")
    return rel


def relative_url(page: str, target: str) -> str:
    """``target`` (relative to the site root) as a link from the page at ``page`` (relative to the site root)."""
    return "../" * page.count("/") + target


def is_png_path(rel: Any) -> bool:
    """Whether ``rel`` is a store PNG path ``png/ab/<sha256>.png`` (the first two hex digits repeated)."""
    m = _PNG_PATH.fullmatch(rel) if isinstance(rel, str) else None
    return bool(m) and m.group(2).startswith(m.group(1))


__all__ = ["slug", "index_url", "layer_url", "unit_url", "png_url", "relative_url", "is_png_path"]
