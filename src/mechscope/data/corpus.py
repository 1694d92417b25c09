"""An offline text corpus, assembled by a fixed recipe from text that every machine with Python already has.

(Over 400 lines because the corpus recipe — its sources, their cleaning, the seeded selection and the checked
load — is one contract that `build_corpus` and `load_corpus` must agree on.)

The recipe (``corpus_sources()``) has up to three sources, each a list of files read in a seeded order:

* ``stdlib_code`` -- the Python standard library's ``.py`` files (under ``sysconfig.get_paths()["stdlib"]``,
  skipping the ``test``, ``tests``, ``idlelib``, ``lib2to3``, ``site-packages`` and ``__pycache__`` folders);
  one document per file.
* ``stdlib_docstrings`` -- English prose: the module, class and function docstrings of those same files (read
  with ``ast``, cleaned by ``ast.get_docstring``, in source order, joined by blank lines); one document per
  module.
* ``man_pages`` -- more English prose: the gzipped man pages in ``/usr/share/man/man1`` ... ``man8`` (symbolic
  links skipped), with the troff markup stripped crudely (lines starting with ``.`` or ``'`` dropped, ``\\fB``-
  style font escapes and other backslash escapes removed).  Present only where the machine has man pages: the
  recipe works without them.

``build_corpus(out_dir, max_bytes=..., seed=0, held_out=0.02)`` reads documents until ``max_bytes`` (UTF-8
bytes of document text) is reached, always taking the next document from the source that has contributed the
fewest bytes so far, so a capped corpus keeps the sources balanced.  A document that would overflow the cap
ends its source.  The split is by whole document, and by input file: the input files are shuffled with
``seed`` and their documents go to ``held_out.txt`` until about a ``held_out`` fraction of the documents is
reached (at least one where possible), so a module's docstrings are never held out while its code is trained
on, or the reverse.  Each output file lists its documents in a ``seed``-shuffled order; the same recipe, seed
and machine give byte-identical files.

In both files documents are separated by ``DOC_SEPARATOR`` (``"\\n<|doc|>\\n"``: the marker alone on a line);
documents containing the marker are dropped, so ``split_documents`` recovers them exactly.  Line endings are
normalised to ``\\n`` and trailing whitespace removed from each document.

``corpus.json`` records the recipe: the per-source counts (files available, documents taken, bytes taken,
files skipped as unreadable), the seed, the cap, the Python version, and the size and sha256 of each output
file.  Every file is written to a temporary file and moved into place with ``os.replace``; ``corpus.json`` is
removed first and written last, so an interrupted build never leaves a corpus that ``load_corpus`` accepts.
``load_corpus(dir)`` verifies both files against the recorded sha256s and raises ``MechscopeError`` naming the
file and the reason on any mismatch.

Example (a two-document toy recipe, to keep it fast)::

    >>> import tempfile, pathlib
    >>> from mechscope.data.corpus import CorpusSource, build_corpus, load_corpus
    >>> src = pathlib.Path(tempfile.mkdtemp())
    >>> _ = (src / "a.txt").write_text("first document\\n")
    >>> _ = (src / "b.txt").write_text("second document")
    >>> toy = CorpusSource("toy", "text files", files=(src / "a.txt", src / "b.txt"))
    >>> out = pathlib.Path(tempfile.mkdtemp())
    >>> recipe = build_corpus(out, sources=[toy], held_out=0.5)
    >>> recipe["sources"]["toy"]["documents"], recipe["sources"]["toy"]["bytes"]
    (2, 29)
    >>> corpus = load_corpus(out)
    >>> sorted(corpus.documents("train") + corpus.documents("held_out"))
    ['first document', 'second document']
"""

from __future__ import annotations

import ast
import gzip
import hashlib
import json
import os
import platform
import random
import re
import sys
import sysconfig
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mechscope.artefacts import atomic_write_bytes, atomic_write_json
from mechscope.errors import MechscopeError

DOC_SEPARATOR = "\n<|doc|>\n"
"""Separates documents in ``train.txt`` and ``held_out.txt``: the marker ``<|doc|>`` alone on a line."""

FORMAT = 1
DEFAULT_MAX_BYTES = 20_000_000
SPLITS = {"train": "train.txt", "held_out": "held_out.txt"}
SKIP_DIRS = frozenset({"test", "tests", "idlelib", "lib2to3", "site-packages", "__pycache__"})
MAN_ROOT = Path("/usr/share/man")


# ---------------------------------------------------------------------------------------------------- sources


@dataclass(frozen=True)
class CorpusSource:
    """One source of the recipe: a name, a description, its files (sorted) and how to turn a file into text.

    ``read(path)`` returns the document text of one file, or ``None`` to skip it (unreadable, empty, too
    short); the default reads the file as UTF-8.
    """

    name: str
    description: str
    files: tuple[Path, ...] = field(default=(), repr=False)
    read: Callable[[Path], str | None] | None = field(default=None, repr=False, compare=False)

    def document(self, path: Path) -> str | None:
        """The normalised text of ``path`` under this source's reader, or ``None`` when it is skipped."""
        try:
            text = (self.read or _read_text)(path)
        except (OSError, UnicodeDecodeError, SyntaxError, ValueError, EOFError):
            return None
        if text is None:
            return None
        text = "\n".join(line.rstrip() for line in text.replace("\r\n", "\n").replace("\r", "\n").split("\n"))
        text = text.strip("\n")
        if not text or DOC_SEPARATOR.strip() in text:
            return None
        return text


def _read_text(path: Path) -> str:
    return Path(path).read_bytes().decode("utf-8")


def stdlib_files(root: str | os.PathLike[str] | None = None) -> list[Path]:
    """The standard library's ``.py`` files, sorted by path, skipping tests, idlelib, lib2to3 and site-packages."""
    root = Path(root if root is not None else sysconfig.get_paths()["stdlib"])
    found: list[Path] = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if d not in SKIP_DIRS)
        found += [Path(dirpath) / f for f in filenames if f.endswith(".py")]
    return sorted(found)


def module_docstrings(source: str | bytes) -> str | None:
    """The module, class and function docstrings of Python ``source``, in source order, joined by blank lines.

    >>> print(module_docstrings('\"\"\"Top.\"\"\"\\nclass A:\\n    \"\"\"An A.\\n\\n    More.\"\"\"\\n    def f(self):\\n        \"\"\"F.\"\"\"'))
    Top.
    <BLANKLINE>
    An A.
    <BLANKLINE>
    More.
    <BLANKLINE>
    F.
    """
    with warnings.catch_warnings():  # invalid escape sequences in old files warn at parse time
        warnings.simplefilter("ignore")
        tree = ast.parse(source)
    found: list[str] = []

    def visit(node: ast.AST) -> None:  # docstrings live only in statement bodies: skip expressions
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            doc = ast.get_docstring(node, clean=True)
            if doc and doc.strip():
                found.append(doc.strip())
        for name in _BODY_FIELDS:
            for child in getattr(node, name, None) or ():
                if isinstance(child, (ast.stmt, ast.excepthandler, ast.match_case)):
                    visit(child)

    visit(tree)
    return "\n\n".join(found) if found else None


_BODY_FIELDS = ("body", "orelse", "finalbody", "handlers", "cases")


def _read_docstrings(path: Path) -> str | None:
    return module_docstrings(Path(path).read_bytes())


_TROFF_COMMENT = re.compile(r'\\".*')
_BLANK_RUNS = re.compile(r"\n{3,}")
_TROFF_ESCAPES = [
    (re.compile(r"\\f(\[[^\]]*\]|\(..|.)"), ""),  # font changes: \fB \fI \fR \fP \f(CW \f[B]
    (re.compile(r"\\s[+-]?\d"), ""),  # size changes
    (re.compile(r"\\\*(\[[^\]]*\]|\(..|.)"), ""),  # string interpolations
    (re.compile(r"\\\((em|en)"), "-"),
    (re.compile(r"\\\((lq|rq|dq)"), '"'),
    (re.compile(r"\\\((oq|cq|aq)"), "'"),
    (re.compile(r"\\\((bu|ci)"), "*"),
    (re.compile(r"\\\(..|\\\[[^\]]*\]"), ""),  # other special characters
    (re.compile(r"\\[-]"), "-"),
    (re.compile(r"\\e"), "\\\\"),
    (re.compile(r"\\[&|^%:!cdu]"), ""),  # zero-width escapes
    (re.compile(r"\\ "), " "),
]


def strip_troff(text: str) -> str:
    """Crude troff-to-text: drop request lines (``.`` or ``'``), comments and escapes; collapse blank runs.

    >>> print(strip_troff('.TH LS 1\\n.SH NAME\\n\\\\fBls\\\\fR \\\\- list\\n.PP\\nSee \\\\fIdir\\\\fP.'))
    ls - list
    See dir.
    """
    kept = [line for line in text.split("\n") if not line.startswith((".", "'", '\\"'))]
    text = _TROFF_COMMENT.sub("", "\n".join(kept))
    for pattern, repl in _TROFF_ESCAPES:
        text = pattern.sub(repl, text)
    text = text.replace("\\\\", "\\")
    text = "\n".join(line.rstrip() for line in text.split("\n"))
    return _BLANK_RUNS.sub("\n\n", text).strip()


def _read_man(path: Path) -> str | None:
    raw = gzip.decompress(Path(path).read_bytes())
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        text = raw.decode("latin-1")
    if text.startswith(".so "):  # a redirect to another page
        return None
    text = strip_troff(text)
    return text if len(text) >= 200 else None


def man_files(root: str | os.PathLike[str] = MAN_ROOT) -> list[Path]:
    """The gzipped man pages in ``root/man1`` ... ``root/man8`` (not symbolic links), sorted; ``[]`` if none."""
    found: list[Path] = []
    for section in range(1, 9):
        folder = Path(root) / f"man{section}"
        if folder.is_dir():
            found += [p for p in folder.iterdir() if p.name.endswith(".gz") and not p.is_symlink()]
    return sorted(found)


def corpus_sources(*, stdlib: str | os.PathLike[str] | None = None,
                   man_root: str | os.PathLike[str] | None = MAN_ROOT) -> list[CorpusSource]:
    """The recipe's sources on this machine: stdlib code, stdlib docstrings and (where present) man pages.

    ``stdlib`` overrides the standard library folder; ``man_root=None`` leaves the man pages out.
    """
    py = tuple(stdlib_files(stdlib))
    sources = [
        CorpusSource("stdlib_code", "Python standard library .py files", py, _read_text),
        CorpusSource("stdlib_docstrings", "docstrings of the standard library modules (ast)", py, _read_docstrings),
    ]
    man = tuple(man_files(man_root)) if man_root is not None else ()
    if man:
        sources.append(CorpusSource("man_pages", f"man pages under {man_root}, troff stripped", man, _read_man))
    return sources


# ---------------------------------------------------------------------------------------------------- build


def _select(sources: list[CorpusSource], max_bytes: int | None, seed: int
            ) -> tuple[list[tuple[str, str, str]], dict[str, dict[str, int]]]:
    """Documents ``(source, file, text)`` taken fewest-bytes-first across sources, each source in a seeded order."""
    stats = {s.name: {"files": len(s.files), "documents": 0, "bytes": 0, "skipped": 0} for s in sources}
    queues: dict[str, Iterator[Path]] = {}
    for s in sources:
        order = list(s.files)
        random.Random(f"{seed}:{s.name}").shuffle(order)
        queues[s.name] = iter(order)
    by_name = {s.name: s for s in sources}
    active = [s.name for s in sources]
    docs: list[tuple[str, str, str]] = []
    total = 0
    while active:
        name = min(active, key=lambda n: (stats[n]["bytes"], active.index(n)))
        path = next(queues[name], None)
        if path is None:
            active.remove(name)
            continue
        text = by_name[name].document(path)
        if text is None:
            stats[name]["skipped"] += 1
            continue
        size = len(text.encode("utf-8"))
        if max_bytes is not None and total + size > max_bytes:
            active.remove(name)  # this source is done; the others may still fit smaller documents
            continue
        docs.append((name, str(path), text))
        stats[name]["documents"] += 1
        stats[name]["bytes"] += size
        total += size
    return docs, stats


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _joined(texts: list[str]) -> Iterator[bytes]:
    for i, text in enumerate(texts):
        yield ((DOC_SEPARATOR if i else "") + text).encode("utf-8")


def build_corpus(out_dir: str | os.PathLike[str], *, max_bytes: int | None = DEFAULT_MAX_BYTES, seed: int = 0,
                 held_out: float = 0.02, sources: list[CorpusSource] | None = None) -> dict[str, Any]:
    """Build ``train.txt``, ``held_out.txt`` and ``corpus.json`` in ``out_dir``; return the recipe (``corpus.json``).

    ``max_bytes`` caps the document text in UTF-8 bytes (``None``: everything); ``held_out`` is the fraction of
    documents held out; ``sources`` defaults to ``corpus_sources()``.
    """
    if not 0 <= held_out < 1:
        raise MechscopeError(f"held_out must be a fraction in [0, 1), got {held_out!r}.")
    if max_bytes is not None and max_bytes <= 0:
        raise MechscopeError(f"max_bytes must be a positive number of bytes or None, got {max_bytes!r}.")
    sources = corpus_sources() if sources is None else list(sources)
    if len({s.name for s in sources}) != len(sources):
        raise MechscopeError(f"corpus source names must be unique, got {[s.name for s in sources]}.")
    docs, stats = _select(sources, max_bytes, seed)
    if not docs:
        raise MechscopeError("the corpus recipe found no documents: " + ", ".join(
            f"{n}: {s['files']} files, {s['skipped']} skipped" for n, s in stats.items()) + ".")
    n_held = 0
    if held_out > 0 and len(docs) >= 2:
        n_held = min(len(docs) - 1, max(1, round(held_out * len(docs))))
    # Hold out whole files: a module's docstrings never sit on the other side of the split from its code.
    files = sorted({d[1] for d in docs})
    random.Random(f"{seed}:held_out").shuffle(files)
    per_file: dict[str, int] = {}
    for d in docs:
        per_file[d[1]] = per_file.get(d[1], 0) + 1
    held_files: set[str] = set()
    taken = 0
    for f in files:
        if taken >= n_held:
            break
        if taken + per_file[f] < len(docs):  # keep at least one training document
            held_files.add(f)
            taken += per_file[f]
    order = list(range(len(docs)))
    random.Random(seed).shuffle(order)
    split_texts = {"held_out": [docs[i][2] for i in order if docs[i][1] in held_files],
                   "train": [docs[i][2] for i in order if docs[i][1] not in held_files]}

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    meta = out / "corpus.json"
    if meta.exists():
        meta.unlink()  # an interrupted rebuild must not leave an old recipe beside new files
    files: dict[str, dict[str, Any]] = {}
    for split, filename in SPLITS.items():
        atomic_write_bytes(out / filename, _joined(split_texts[split]), fsync=True)
        files[filename] = {"split": split, "documents": len(split_texts[split]),
                           "bytes": (out / filename).stat().st_size, "sha256": _sha256(out / filename)}
    recipe: dict[str, Any] = {
        "format": FORMAT,
        "separator": DOC_SEPARATOR,
        "seed": seed,
        "held_out": held_out,
        "max_bytes": max_bytes,
        "python_version": platform.python_version(),
        "python": sys.version,
        "sources": {s.name: {"description": s.description, **stats[s.name]} for s in sources},
        "files": files,
    }
    atomic_write_json(meta, recipe, sort_keys=True)
    return recipe


# ---------------------------------------------------------------------------------------------------- load


def split_documents(text: str) -> list[str]:
    """The documents of a corpus file's ``text`` (``[]`` for an empty file)."""
    return text.split(DOC_SEPARATOR) if text else []


@dataclass(frozen=True)
class Corpus:
    """A verified corpus folder: ``recipe`` is ``corpus.json``; ``text(split)`` / ``documents(split)`` read it."""

    root: Path
    recipe: dict[str, Any]

    def path(self, split: str = "train") -> Path:
        """The file of ``split`` (``"train"`` or ``"held_out"``)."""
        if split not in SPLITS:
            raise MechscopeError(f"unknown corpus split {split!r}; valid splits: {', '.join(SPLITS)}.")
        return self.root / SPLITS[split]

    def text(self, split: str = "train") -> str:
        """The whole text of ``split``, documents separated by ``DOC_SEPARATOR``."""
        return self.path(split).read_text(encoding="utf-8")

    def documents(self, split: str = "train") -> list[str]:
        """The documents of ``split``, in file order."""
        return split_documents(self.text(split))


def load_corpus(corpus_dir: str | os.PathLike[str]) -> Corpus:
    """Open a corpus built by ``build_corpus``, checking every file against the sha256 in ``corpus.json``."""
    root = Path(corpus_dir)
    meta = root / "corpus.json"
    if not meta.is_file():
        raise MechscopeError(f"{meta} is missing: {root} is not a corpus folder or its build did not finish; "
                             "run build_corpus() again.")
    try:
        recipe = json.loads(meta.read_text(encoding="utf-8"))
        files = recipe["files"]
        if recipe.get("format") != FORMAT:
            raise ValueError(f"format {recipe.get('format')!r}, expected {FORMAT}")
    except (ValueError, KeyError, TypeError) as e:
        raise MechscopeError(f"{meta} is corrupt ({type(e).__name__}: {e}); run build_corpus() again.") from None
    for filename in SPLITS.values():
        path = root / filename
        if filename not in files:
            raise MechscopeError(f"{meta} records no checksum for {filename}; run build_corpus() again.")
        if not path.is_file():
            raise MechscopeError(f"{path} is missing; run build_corpus() again.")
        got, want = _sha256(path), files[filename].get("sha256")
        if got != want:
            raise MechscopeError(f"{path}: sha256 checksum differs from the one in {meta.name} "
                                 f"(expected {want}, got {got}): the file was modified or corrupted; "
                                 "run build_corpus() again.")
    return Corpus(root, recipe)
