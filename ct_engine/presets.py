"""Names that resolve to shipped models and transcoder sets, without a network.

=================  ==================================================================
name               what
=================  ==================================================================
``toy-world``      the embedded toy-world language model (``ct_engine/toyworld``)
``toy-world-plt``  its per-layer transcoders
``toy-world-clt``  its cross-layer transcoder
=================  ==================================================================

``ReplacementModel.from_pretrained("toy-world", "toy-world-plt")`` loads them offline.
"""

from __future__ import annotations

from pathlib import Path

TOY_WORLD_DIR = Path(__file__).resolve().parent / "toyworld" / "artifacts"

MODELS: dict[str, Path] = {"toy-world": TOY_WORLD_DIR / "model"}
TRANSCODERS: dict[str, Path] = {
    "toy-world-plt": TOY_WORLD_DIR / "plt",
    "toy-world-clt": TOY_WORLD_DIR / "clt",
}


def resolve_model(name: str) -> str:
    """The local directory of a registered model name, else ``name`` unchanged."""
    path = MODELS.get(str(name))
    if path is None:
        return str(name)
    if not (path / "config.json").exists():
        raise FileNotFoundError(f"the shipped model {name!r} is missing from {path}")
    return str(path)


def resolve_transcoders(ref):
    """The local folder of a registered transcoder name, else ``ref`` unchanged."""
    path = TRANSCODERS.get(ref) if isinstance(ref, str) else None
    if path is None:
        return ref
    if not (path / "config.yaml").exists():
        raise FileNotFoundError(f"the shipped transcoders {ref!r} are missing from {path}")
    return path
