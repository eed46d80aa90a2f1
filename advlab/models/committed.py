"""Self-trained weights committed to the package (``advlab/resources/<folder>/``): float16 state
dicts listed in the folder's ``manifest.json`` (file, sha256, recipe, the command that made
them) and described in its ``PROVENANCE.md``; read after a sha256 check with
``weights_only=True``.  The denoisers (:mod:`advlab.models.dncnn`) and the surrogate
classifiers (:mod:`advlab.models.vgg`) are stored this way; their training modules write them
with :func:`commit`.
"""
from __future__ import annotations

import hashlib
import io
import json
import time
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import torch
from torch import nn

from ..cache import atomic_write_bytes

MANIFEST = "manifest.json"
PROVENANCE = "PROVENANCE.md"


@dataclass(frozen=True)
class Record:
    """A committed model: its file, sha256, recipe and the command that made it."""

    name: str
    file: str
    sha256: str
    recipe: dict
    command: str


def resource_folder(name: str) -> Path:
    """``advlab/resources/<name>``."""
    return Path(str(resources.files("advlab.resources"))) / name


def read_manifest(folder: Path) -> dict[str, Record]:
    """The models committed in ``folder``, by name (empty when there is no manifest)."""
    path = Path(folder) / MANIFEST
    if not path.exists():
        return {}
    return {k: Record(**v) for k, v in json.loads(path.read_text()).items()}


def read_state(folder: Path, record: Record, what: str = "committed weights"
               ) -> dict[str, torch.Tensor]:
    """The state dict of ``record`` (floating tensors as float32), its file checked against
    the manifest's sha256 first (a mismatch is a ``ChecksumError``, a ValueError) and read with ``weights_only``."""
    path = Path(folder) / record.file
    blob = path.read_bytes()
    digest = hashlib.sha256(blob).hexdigest()
    if digest != record.sha256:
        from ..download import ChecksumError, resource_hint
        package = Path(str(resources.files("advlab.resources")))
        fix = (resource_hint(path.relative_to(package).as_posix()) if path.is_relative_to(package)
               else "train it again or restore the file")
        raise ChecksumError(f"{what} {path}: sha256 {digest} does not match the manifest's "
                            f"{record.sha256}; the file is damaged or was replaced: {fix}")
    state = torch.load(io.BytesIO(blob), map_location="cpu", weights_only=True)
    return {k: v.float() if v.is_floating_point() else v for k, v in state.items()}


def load_model(folder: Path, records: dict[str, Record], name: str, build, what: str
               ) -> nn.Module:
    """The committed model ``name`` (``records``: the manifest of ``folder``): ``build(**arch)``
    of its recorded recipe with the checked weights (:func:`read_state`), in eval mode on the
    CPU; a name that is not committed is a ValueError naming those that are (``what``: e.g.
    "denoiser")."""
    record = records.get(name)
    if record is None:
        raise ValueError(f"no committed {what} {name!r}; committed: {sorted(records)}")
    model = build(**record.recipe["arch"])
    model.load_state_dict(read_state(folder, record, f"committed {what}"))
    return model.eval()


def float16_bytes(model: nn.Module) -> bytes:
    """``model``'s state dict with floating tensors as float16, serialised by ``torch.save``
    to memory (so the bytes, and the sha256, depend only on the weights, not on a file name)."""
    state = {k: v.detach().cpu().half() if v.is_floating_point() else v.detach().cpu()
             for k, v in model.state_dict().items()}
    buffer = io.BytesIO()
    torch.save(state, buffer)
    return buffer.getvalue()


def as_committed(model: nn.Module) -> nn.Module:
    """``model`` with its floating weights rounded through float16 in place, i.e. exactly what
    :func:`commit` stores and the loaders read back (as float32)."""
    with torch.no_grad():
        for v in model.state_dict().values():
            if v.is_floating_point():
                v.copy_(v.half().float())
    return model


def commit(folder: Path, name: str, model: nn.Module, recipe: dict, command: str, data: str,
           notes: dict | None = None, header: str = "") -> Path:
    """Write ``model`` as ``<folder>/<name>.pt`` (float16), record it in the manifest (sha256,
    ``recipe``, ``command``) and replace its section of ``PROVENANCE.md`` (file, size, sha256,
    command, ``data``, seed and recipe, ``notes``, date).  ``header`` starts a new
    ``PROVENANCE.md``."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.pt"
    blob = float16_bytes(model)
    atomic_write_bytes(blob, path)
    entries = {k: vars(v) for k, v in read_manifest(folder).items()}
    entries[name] = vars(Record(name, path.name, hashlib.sha256(blob).hexdigest(),
                                json.loads(json.dumps(recipe)), command))
    _write_text(folder / MANIFEST, json.dumps(entries, indent=1, sort_keys=True) + "\n")
    _provenance(folder, entries[name], len(blob), data, notes or {}, header)
    return path


def _provenance(folder: Path, entry: dict, size: int, data: str, notes: dict,
                header: str) -> None:
    path = folder / PROVENANCE
    text = path.read_text() if path.exists() else header
    name = entry["name"]
    start = text.find(f"\n## {name}\n")
    if start >= 0:  # replace this model's section
        end = text.find("\n## ", start + 1)
        text = text[:start] + (text[end:] if end >= 0 else "\n")
    cfg = entry["recipe"]
    lines = [f"\n## {name}\n",
             f"- file: `{entry['file']}` ({size:,} bytes), sha256 `{entry['sha256']}`",
             f"- command: `{entry['command']}`", f"- data: {data}",
             f"- seed: {cfg.get('seed')}; recipe: `{json.dumps(cfg, sort_keys=True)}`"]
    lines += [f"- {k}: {v}" for k, v in notes.items()]
    lines.append(f"- written: {time.strftime('%Y-%m-%d')}")
    _write_text(path, text.rstrip("\n") + "\n" + "\n".join(lines) + "\n")


def _write_text(path: Path, text: str) -> None:
    """Write through a temporary file and a rename (readers never see half a manifest)."""
    atomic_write_bytes(text.encode(), path)
