"""Every bundled-hash check refuses a damaged file with its reason: the bundle (or the part a test needs) is
copied into a temp folder, one byte is flipped, and the loader is pointed at the copy (``registry.bundle_dir``
monkeypatched, or ``load_mixed3b_sae(folder)``)."""

import shutil

import pytest

from mechscope.data.tokenizer import load_tokenizer
from mechscope.errors import MechscopeError, WeightsError
from mechscope.reproduce.polysemantic_sae import NAME as SAE_NAME, load_mixed3b_sae
from mechscope.zoo import registry
from mechscope.zoo.weights import sha256_file


def _flip_byte(path, at: int = -100) -> None:
    """Change one byte of ``path`` (near its end by default: inside the tensors, not the header)."""
    data = bytearray(path.read_bytes())
    data[at] ^= 0x01
    path.write_bytes(bytes(data))


def _copy(names, tmp_path, monkeypatch):
    """A bundle folder holding copies of ``names``, made the registry's bundle."""
    for name in names:
        shutil.copy(registry.bundle_dir() / name, tmp_path / name)
    monkeypatch.setattr(registry, "bundle_dir", lambda: tmp_path)
    return tmp_path


def test_the_registry_records_the_hashes_the_cards_record():
    for card in registry.cards():
        if card.bundled is None:
            continue
        json_card = registry.bundled_card(card.name)
        assert card.bundled_sha256 == json_card["sha256"] == sha256_file(registry.bundle_dir() / card.bundled)
        if card.input_kind == "tokens" or card.bundled_tokenizer_sha256 is not None:
            tok = (registry.bundle_dir() / card.bundled).with_suffix(".tokenizer.json")
            assert card.bundled_tokenizer_sha256 == json_card["tokenizer_sha256"] == sha256_file(tok)


def test_intact_copies_load(tmp_path, monkeypatch):
    _copy(["banding_max.safetensors", "attn_only_1l.tokenizer.json"], tmp_path, monkeypatch)
    registry.load("banding-max", device="cpu")
    assert registry.bundled_tokenizer("attn-only-1l").vocab_size == 1024


def test_damaged_bundled_weights_are_refused(tmp_path, monkeypatch):
    folder = _copy(["banding_max.safetensors"], tmp_path, monkeypatch)
    _flip_byte(folder / "banding_max.safetensors")
    with pytest.raises(WeightsError, match=r"banding_max.safetensors fail their sha256 check "
                                           r"\(recorded f248bba5\w+, found \w+\); reinstall"):
        registry.load("banding-max", device="cpu")
    # random weights never read the file
    registry.load("banding-max", weights="random", seed=0, device="cpu")


def test_damaged_bundled_tokenizer_is_refused(tmp_path, monkeypatch):
    folder = _copy(["attn_only_2l.tokenizer.json", "attn_only_2l.safetensors"], tmp_path, monkeypatch)
    path = folder / "attn_only_2l.tokenizer.json"
    text = path.read_text()
    path.write_text(text.replace('"<|bos|>"', '"<|BOS|>"', 1))   # one byte; still valid JSON and a tokenizer
    assert load_tokenizer(path).vocab_size == 1025   # unchecked it loads, silently wrong: only the hash tells
    with pytest.raises(MechscopeError, match=r"attn_only_2l\.tokenizer\.json fails its sha256 check \(recorded "
                                             r"4751b46c241b…, found [0-9a-f]{12}…\)"):
        registry.bundled_tokenizer("attn-only-2l")
    # the language-model loader no longer drops a damaged tokenizer silently
    with pytest.raises(MechscopeError, match="fails its sha256 check"):
        registry.load_language_model("attn-only-2l")


def test_load_tokenizer_checks_a_given_sha256(tmp_path):
    path = tmp_path / "tok.json"
    shutil.copy(registry.bundle_dir() / "attn_only_1l.tokenizer.json", path)
    assert load_tokenizer(path, sha256=sha256_file(path)).vocab_size == 1024
    with pytest.raises(MechscopeError, match="fails its sha256 check"):
        load_tokenizer(path, sha256="0" * 64)


def test_damaged_sae_is_refused(tmp_path):
    for suffix in (".safetensors", ".json"):
        shutil.copy(registry.bundle_dir() / f"{SAE_NAME}{suffix}", tmp_path / f"{SAE_NAME}{suffix}")
    sae, card = load_mixed3b_sae(tmp_path)
    assert card["sha256"] == sha256_file(tmp_path / f"{SAE_NAME}.safetensors")
    _flip_byte(tmp_path / f"{SAE_NAME}.safetensors")
    with pytest.raises(WeightsError, match=f"{SAE_NAME}.safetensors does not match the sha256 of its card; "
                                           "retrain with `mechscope train shapes-sae`"):
        load_mixed3b_sae(tmp_path)
