import pytest
import torch

from mechscope.errors import WeightsError
from mechscope.zoo.weights import (
    cache_dir,
    check_state_dict,
    download,
    read_state_dict,
    save_state_dict,
    sha256_file,
)


def test_safetensors_and_pickle_round_trip(tmp_path):
    sd = {"a.weight": torch.randn(3, 4), "b": torch.arange(5)}
    save_state_dict(sd, tmp_path / "w.safetensors")
    torch.save(sd, tmp_path / "w.pth")
    torch.save({"state_dict": sd, "epoch": 3}, tmp_path / "ckpt.pt")
    for name in ("w.safetensors", "w.pth", "ckpt.pt"):
        got = read_state_dict(tmp_path / name)
        assert got.keys() == sd.keys() and all(torch.equal(got[k], sd[k]) for k in sd)
    assert not list(tmp_path.glob("*.part")) and not list(tmp_path.glob(".*"))


@pytest.mark.parametrize("name, data", [("w.pth", b"not a pickle at all"), ("w.safetensors", b"\x10\x00\x00")])
def test_corrupt_files_are_refused_with_the_reason(tmp_path, name, data):
    (tmp_path / name).write_bytes(data)
    with pytest.raises(WeightsError, match=f"cannot read weights file .*{name}"):
        read_state_dict(tmp_path / name)


def test_truncated_safetensors_is_refused(tmp_path):
    save_state_dict({"w": torch.randn(100, 100)}, tmp_path / "w.safetensors")
    data = (tmp_path / "w.safetensors").read_bytes()
    (tmp_path / "t.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(WeightsError, match="cannot read"):
        read_state_dict(tmp_path / "t.safetensors")


def test_missing_file_and_non_state_dict(tmp_path):
    with pytest.raises(WeightsError, match="does not exist"):
        read_state_dict(tmp_path / "nope.pth")
    torch.save([1, 2, 3], tmp_path / "list.pth")
    with pytest.raises(WeightsError, match="does not hold a state dict"):
        read_state_dict(tmp_path / "list.pth")


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
def test_pickles_with_code_are_refused(tmp_path):
    import pickle

    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    (tmp_path / "evil.pth").write_bytes(pickle.dumps({"w": Evil()}))
    with pytest.raises(WeightsError, match="cannot read"):
        read_state_dict(tmp_path / "evil.pth")


def test_check_state_dict_names_everything():
    expected = {"a": torch.zeros(2), "b": torch.zeros(3)}
    with pytest.raises(WeightsError) as err:
        check_state_dict({"a": torch.zeros(4), "c": torch.zeros(1)}, expected, source="f.pth")
    msg = str(err.value)
    assert "f.pth" in msg and "missing keys: b" in msg and "unexpected keys: c" in msg and "a: (4,) != expected (2,)" in msg
    check_state_dict({"a": torch.ones(2), "b": torch.ones(3)}, expected)


def _served(tmp_path, data=b"weights-bytes" * 1000):
    src = tmp_path / "served.bin"
    src.write_bytes(data)
    return src.as_uri(), sha256_file(src)


def test_download_verifies_pinned_sha256_and_caches(tmp_path):
    url, digest = _served(tmp_path)
    path = download(url, "m.bin", digest, progress=False)
    assert path.parent == cache_dir() and path.read_bytes() == (tmp_path / "served.bin").read_bytes()
    (tmp_path / "served.bin").unlink()  # a second call must come from the cache
    assert download(url, "m.bin", digest, progress=False) == path


def test_download_with_wrong_sha256_leaves_nothing_behind(tmp_path):
    url, _ = _served(tmp_path)
    with pytest.raises(WeightsError, match="expected 0000"):
        download(url, "m.bin", "0000" + "0" * 60, progress=False)
    assert not cache_dir().exists() or not any(cache_dir().iterdir())


def test_download_trust_on_first_use_then_detects_tampering(tmp_path, capsys):
    url, digest = _served(tmp_path)
    path = download(url, "m.bin", None, progress=False)
    assert digest in capsys.readouterr().out
    assert path.with_name("m.bin.sha256").read_text().strip() == digest
    path.write_bytes(b"tampered")
    with pytest.raises(WeightsError, match="corrupt or was replaced"):
        download(url, "m.bin", None, progress=False)


def test_download_failure_is_a_weights_error(tmp_path):
    with pytest.raises(WeightsError, match="could not download .*weights=PATH"):
        download((tmp_path / "absent.bin").as_uri(), "x.bin", None, progress=False)
    assert not any(cache_dir().iterdir())
