"""Weights files: locate, download into a cache, verify by sha256, read safely.

Formats: ``.safetensors`` (preferred) and PyTorch pickles (``.pt``/``.pth``/``.bin``), the latter read with
``torch.load(weights_only=True)`` so that no code in a file is ever run.  Downloads go to a temporary file in the
cache folder and are renamed into place only once complete and verified: a broken download leaves nothing behind.

The cache is ``$MECHSCOPE_CACHE`` when set, else ``~/.cache/mechscope``.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import urllib.request
from pathlib import Path

import torch
from tqdm.auto import tqdm

from mechscope.artefacts import atomic_write_bytes
from mechscope.errors import WeightsError

_PICKLE_SUFFIXES = {".pt", ".pth", ".bin", ".ckpt"}


def cache_dir() -> Path:
    """The folder where downloaded weights are kept."""
    return Path(os.environ.get("MECHSCOPE_CACHE", Path.home() / ".cache" / "mechscope"))


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file, read in chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def download(url: str, filename: str, sha256: str | None = None, *, progress: bool = True) -> Path:
    """Return the cached copy of ``url``, downloading it first when absent.

    With ``sha256`` given, the file must hash to it (checked after download and on every call that finds it in
    the cache).  Without one, the hash of the first download is printed and recorded beside the file
    (``<file>.sha256``) and later calls verify against that record, so a file that changes later is refused.
    """
    dest = cache_dir() / filename
    record = dest.with_name(dest.name + ".sha256")
    if not dest.exists():
        dest.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".part")
        try:
            with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=60) as resp:  # noqa: S310
                total = int(resp.headers.get("Content-Length") or 0) or None
                with tqdm(total=total, unit="B", unit_scale=True, desc=filename, disable=not progress) as bar:
                    while block := resp.read(1 << 20):
                        out.write(block)
                        bar.update(len(block))
            got = sha256_file(tmp)
            if sha256 is not None and got != sha256:
                raise WeightsError(f"download of {url} has sha256 {got}, expected {sha256}; file discarded")
            os.replace(tmp, dest)
        except OSError as e:
            raise WeightsError(f"could not download {url}: {e}. Pass a local path instead (weights=PATH).") from e
        finally:
            Path(tmp).unlink(missing_ok=True)
        print(f"downloaded {filename} to {dest} (sha256 {got})")
        if sha256 is None:
            atomic_write_bytes(record, (got + "\n").encode())
    expected = sha256 or (record.read_text().strip() if record.exists() else None)
    got = sha256_file(dest)
    if expected is not None and got != expected:
        raise WeightsError(
            f"cached file {dest} has sha256 {got}, expected {expected}: it is corrupt or was replaced; "
            "delete it to download again"
        )
    return dest


def read_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Read a state dict from a ``.safetensors`` file or a PyTorch pickle (weights only, no code run).

    Raises ``WeightsError`` naming the file and the reason when it is missing, truncated or not a state dict.
    """
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"weights file {path} does not exist")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            sd = load_file(str(path))
        else:
            sd = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # every reader has its own exception types for a corrupt file
        raise WeightsError(f"cannot read weights file {path}: {type(e).__name__}: {e}") from e
    if isinstance(sd, dict) and "state_dict" in sd and isinstance(sd["state_dict"], dict):
        sd = sd["state_dict"]
    if not isinstance(sd, dict) or not all(isinstance(v, torch.Tensor) for v in sd.values()):
        raise WeightsError(f"weights file {path} does not hold a state dict of tensors")
    return sd


def save_state_dict(state_dict: dict[str, torch.Tensor], path: str | os.PathLike, metadata: dict[str, str] | None = None) -> None:
    """Save a state dict as safetensors, atomically."""
    from safetensors.torch import save

    tensors = {k: v.detach().contiguous().cpu() for k, v in state_dict.items()}
    atomic_write_bytes(Path(path), save(tensors, metadata=metadata))


def check_state_dict(
    state_dict: dict[str, torch.Tensor], expected: dict[str, torch.Tensor], source: str = "state dict"
) -> None:
    """Refuse a state dict whose keys or shapes differ from ``expected``, naming every offending key."""
    missing = sorted(set(expected) - set(state_dict))
    unexpected = sorted(set(state_dict) - set(expected))
    wrong = sorted(
        f"{k}: {tuple(state_dict[k].shape)} != expected {tuple(expected[k].shape)}"
        for k in set(expected) & set(state_dict)
        if state_dict[k].shape != expected[k].shape
    )
    problems = []
    if missing:
        problems.append(f"missing keys: {', '.join(missing)}")
    if unexpected:
        problems.append(f"unexpected keys: {', '.join(unexpected)}")
    if wrong:
        problems.append(f"wrong shapes: {'; '.join(wrong)}")
    if problems:
        raise WeightsError(f"{source} does not fit the model: " + " | ".join(problems))
