"""The offline text corpus: deterministic, split by document, checksummed, never half-written."""

import gzip
import json
import os

import pytest

from mechscope.data import corpus as C
from mechscope.errors import MechscopeError

SMALL = 300_000


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    out = tmp_path_factory.mktemp("corpus")
    return out, C.build_corpus(out, max_bytes=SMALL, seed=0)


def _tree(folder):
    return sorted(p.name for p in folder.iterdir())


def test_recipe_has_sources_and_respects_cap(small):
    out, recipe = small
    assert _tree(out) == ["corpus.json", "held_out.txt", "train.txt"]
    sources = recipe["sources"]
    assert {"stdlib_code", "stdlib_docstrings"} <= set(sources)
    assert all(s["documents"] > 0 and s["bytes"] > 0 for s in sources.values())
    assert sum(s["bytes"] for s in sources.values()) <= SMALL
    assert json.loads((out / "corpus.json").read_text()) == recipe
    assert recipe["python_version"] and recipe["seed"] == 0


def test_deterministic_for_a_seed(small, tmp_path):
    out, recipe = small
    again = C.build_corpus(tmp_path / "again", max_bytes=SMALL, seed=0)
    assert again["files"] == recipe["files"]
    other = C.build_corpus(tmp_path / "other", max_bytes=SMALL, seed=1)
    assert other["files"]["train.txt"]["sha256"] != recipe["files"]["train.txt"]["sha256"]


def test_held_out_disjoint_by_document(small):
    out, recipe = small
    corpus = C.load_corpus(out)
    train, held = corpus.documents("train"), corpus.documents("held_out")
    assert held and train
    assert not set(train) & set(held)
    assert len(train) + len(held) == sum(s["documents"] for s in recipe["sources"].values())
    assert recipe["files"]["held_out.txt"]["documents"] == len(held)
    assert all(C.DOC_SEPARATOR not in d for d in train)


def test_held_out_keeps_each_input_file_on_one_side(tmp_path):
    files = tuple(tmp_path / f"m{i:02d}.py" for i in range(40))
    for f in files:
        f.write_text("x")
    sources = [C.CorpusSource("code", "", files, lambda p: f"code {p.stem}"),
               C.CorpusSource("docs", "", files, lambda p: f"docs {p.stem}")]
    C.build_corpus(tmp_path / "out", sources=sources, held_out=0.2, seed=3)
    corpus = C.load_corpus(tmp_path / "out")
    stems = {split: {d.split()[1] for d in corpus.documents(split)} for split in ("train", "held_out")}
    assert len(corpus.documents("held_out")) == 16 and not stems["train"] & stems["held_out"]


def test_load_refuses_tampered_file(small, tmp_path):
    out, _ = small
    copy = tmp_path / "copy"
    copy.mkdir()
    for name in _tree(out):
        (copy / name).write_bytes((out / name).read_bytes())
    data = bytearray((copy / "train.txt").read_bytes())
    data[100] ^= 1
    (copy / "train.txt").write_bytes(bytes(data))
    with pytest.raises(MechscopeError, match=r"train\.txt.*checksum differs"):
        C.load_corpus(copy)
    (copy / "corpus.json").write_text("{not json")
    with pytest.raises(MechscopeError, match="corrupt"):
        C.load_corpus(copy)
    (copy / "corpus.json").unlink()
    with pytest.raises(MechscopeError, match="corpus.json is missing"):
        C.load_corpus(copy)


def _toy(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    for i in range(6):
        (src / f"{i}.txt").write_text(f"document number {i}\n" * (i + 1))
    return [C.CorpusSource("toy", "toy files", tuple(sorted(src.iterdir())))]


def test_failure_mid_write_leaves_nothing(tmp_path, monkeypatch):
    out = tmp_path / "out"

    def boom(fd):
        raise OSError("disk full (simulated)")

    monkeypatch.setattr(C.os, "fsync", boom)
    with pytest.raises(OSError, match="simulated"):
        C.build_corpus(out, sources=_toy(tmp_path))
    assert _tree(out) == []  # no final file, no temporary file


def test_interrupted_rebuild_is_refused(tmp_path, monkeypatch):
    out = tmp_path / "out"
    toy = _toy(tmp_path)
    C.build_corpus(out, sources=toy, seed=0)
    real, calls = os.replace, []

    def flaky(a, b):
        calls.append(b)
        if len(calls) == 2:
            raise KeyboardInterrupt
        real(a, b)

    monkeypatch.setattr(C.os, "replace", flaky)
    with pytest.raises(KeyboardInterrupt):
        C.build_corpus(out, sources=toy, seed=1)
    monkeypatch.setattr(C.os, "replace", real)
    assert _tree(out) == ["held_out.txt", "train.txt"]  # the old corpus.json went first, temporaries cleaned
    with pytest.raises(MechscopeError, match="did not finish"):
        C.load_corpus(out)


def test_man_pages_optional_and_stripped(tmp_path):
    assert [s.name for s in C.corpus_sources(man_root=tmp_path / "absent")] == ["stdlib_code", "stdlib_docstrings"]
    man1 = tmp_path / "man" / "man1"
    man1.mkdir(parents=True)
    page = ".TH TOY 1\n.SH NAME\n\\fBtoy\\fR \\- a toy command\n.SH DESCRIPTION\n" + "Toy does \\fIthings\\fP.\n" * 20
    (man1 / "toy.1.gz").write_bytes(gzip.compress(page.encode()))
    (man1 / "link.1.gz").symlink_to(man1 / "toy.1.gz")
    sources = C.corpus_sources(man_root=tmp_path / "man")
    man = sources[-1]
    assert man.name == "man_pages" and [p.name for p in man.files] == ["toy.1.gz"]
    text = man.document(man.files[0])
    assert text.startswith("toy - a toy command\nToy does things.") and "\\f" not in text and ".SH" not in text
