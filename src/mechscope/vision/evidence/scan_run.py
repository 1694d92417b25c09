"""One resumable dataset scan of a zoo model, saved into a store folder (``mechscope examples`` and
``mechscope stats``): open the dataset, scan with a checkpoint, ``save_scan``, and plain copies of the plots.

``scan_to_store(out, model, layers, dataset)`` is what the two verbs run; it returns a ``ScanSummary`` with the
facts they print.

Example (random weights, a few procedural images)::

    >>> import tempfile
    >>> from pathlib import Path
    >>> with tempfile.TemporaryDirectory() as out:
    ...     s = scan_to_store(Path(out), "shapes", ["conv2d0"], "shapes:4", weights="random", top_k=1,
    ...                       examples=False, stats=True, plot_units=1, progress=False)
    ...     sorted(p.name for p in s.plots)
    ['0_log_prob.png', '0_quilt.png', 'layer_log_prob.png']
    >>> s.seen, s.written["stats"], s.skipped
    (4, 32, {})
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class ScanSummary:
    """What a ``scan_to_store`` run did: images seen, rows written per table, the unreadable files skipped
    (``{file: reason}``) and the plot copies written under ``OUT/plots``."""

    model: str
    weights: str
    dataset: str
    size: int
    seen: int
    written: Mapping[str, int]
    skipped: Mapping[str, str]
    plots: Sequence[Path] = field(default_factory=tuple)
    resumed_from: Path | None = None

    def skipped_by_kind(self) -> dict[str, int]:
        """``{reason kind: count}`` of the skipped files."""
        from mechscope.vision.evidence.scan import skipped_summary

        return skipped_summary(dict(self.skipped))


def scan_to_store(out: Path, model: str, layers: Sequence[str], dataset: str, *, name: str = "scan",
                  top_k: int = 16, weights: str = "bundled", seed: int = 0, batch_size: int = 64,
                  device: str | None = None, amp: bool = False, size: int | None = None, plot_units: int = 0,
                  examples: bool = True, stats: bool = False, progress: bool = True,
                  on_resume: Callable[[Path], None] | None = None, ray: str | None = None) -> ScanSummary:
    """Scan ``dataset`` (a folder of images or ``shapes:N[:SEED]``) with the zoo model ``model`` (``weights``:
    bundled | random | download | a path; ``seed`` of random weights) at ``size`` px (default: the card's),
    keeping ``top_k`` examples per unit of each of ``layers``; save it into the store at ``out`` (created) and copy
    each plot to ``out/plots/LAYER/{CHANNEL|layer}_{kind}.png``.  The scan is checkpointed to
    ``out/{name}.checkpoint.npz`` and resumed from it (``on_resume(path)`` is called first when it is); the store
    is opened before the scan, so a damaged index is refused before any work.

    ``ray``: a Ray cluster's address (``auto``, ``HOST:PORT``; default ``$RAY_ADDRESS``): the scan runs there as
    image ranges merged exactly (``vision.evidence.shards.sharded_scan``; a shard is not checkpointed, an
    interrupted cluster scan starts over); without one it runs in this process, checkpointed.

    ``device``: ``cpu``, ``cuda``, ``cuda:N`` (default: CUDA when available), checked before any work
    (``devices.checked_device``); on a cluster each shard runs there when its worker has it, else on the CPU.
    ``amp``: the forward passes in bfloat16 autocast on CUDA (``devices.autocast``; nothing on the CPU)."""
    from mechscope.artefacts import atomic_write_bytes
    from mechscope.compute.engine import engine
    from mechscope.data.open import open_dataset
    from mechscope.devices import checked_device
    from mechscope.store import open_store, read_rows
    from mechscope.units import validate
    from mechscope.vision.evidence.scan import scan
    from mechscope.vision.evidence.scan_store import save_scan
    from mechscope.vision.evidence.shards import sharded_scan
    from mechscope.zoo.registry import get_card, load

    out = Path(out)
    card = get_card(model)
    device = checked_device(device)
    size = size or int(card.input_shape[-1])
    net = load(card.name, weights=weights, seed=seed, device=device)
    for layer in layers:
        validate(net, layer)
    data = open_dataset(dataset, size)
    runner = engine(ray or None)  # connects first: a wrong address is refused before any work
    settings = {"model": card.name, "weights": str(weights), "seed": seed, "dataset": dataset, "size": size}
    with open_store(out) as store:  # opened first: a damaged index is refused before the scan, not after
        checkpoint = out / f"{name}.checkpoint.npz"
        resumed = checkpoint if checkpoint.exists() and runner.name != "ray" else None
        if resumed is not None and on_resume is not None:
            on_resume(checkpoint)
        if runner.name == "ray":
            state = sharded_scan(net, data, list(layers), engine=runner, k=top_k, batch_size=batch_size,
                                 device=device, amp=amp, settings=settings, progress=progress)
        else:
            state = scan(net, data, list(layers), k=top_k, batch_size=batch_size, checkpoint=checkpoint,
                         device=device, amp=amp, settings=settings, progress=progress)
        written = save_scan(store, state, net, data, model_name=card.name, input_size=size, examples=examples,
                            stats=stats, plot_units=plot_units, progress=progress)
        plots = []
        for r in (r for layer in layers for r in read_rows(store, "figures", model=card.name, layer=layer)):
            where = "layer" if r["channel"] < 0 else str(r["channel"])   # plain copies, for a look without the store
            path = out / "plots" / r["layer"] / f"{where}_{r['kind']}.png"
            atomic_write_bytes(path, (out / r["png"]).read_bytes())
            plots.append(path)
    return ScanSummary(card.name, str(weights), dataset, size, state.seen, dict(written), dict(state.skipped),
                       tuple(plots), resumed)
