"""Feature cards for the viewer: from the lake's feature tables, or from a features folder.

A lake graph's cards come from the lake's feature dashboards of its model
(:func:`ct_lake.features.read_card`, the ``feature_dashboards`` asset), or, when the lake has
none for that model, from the server's features folder. A file graph's cards (``ct attribute
--server``, ``ct serve --graph_file_dir``) come from the features folder: circuit-tracer's
layout (``index.json.gz`` and ``layer_<i>.bin``), written by ``ct features build`` or by
circuit-tracer itself and read by :class:`~ct_engine.features.files.FeatureFiles`.

The folder is also served raw under ``/features/`` (circuit-tracer's own frontend reads it
there with HTTP Range requests); only the files its index names, the index and our manifest
are served, so no request path ever reaches another file.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ct_viewer.graphs import GraphRef, is_inside

if TYPE_CHECKING:  # the engine's feature modules load numpy: imported when a folder is opened
    from ct_engine.features.files import FeatureFiles

# The lake table whose model partition marks dashboards as built (its rows are written last).
_STATS_TABLE = "feature_stats"


class NoCard(LookupError):
    """No card for this feature of this graph (a 404 with the reason)."""


def json_safe(value: Any) -> Any:
    """``value`` with non-finite floats as ``None`` (JSON has none; a card read from a
    circuit-tracer record has NaN logit values); tuples become lists."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {key: json_safe(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(item) for item in value]
    return value


class FeatureFolder:
    """A features folder the server reads cards from and serves raw.

    Opening checks the folder (a one-line ``ValueError`` when it is not one: no
    ``index.json.gz``, bad gzip or JSON, offsets that disagree with the bin files). A folder
    replaced while the server runs (``ct features build`` swaps it atomically) is reopened on
    the next request: the index file's identity is checked each time.
    """

    def __init__(self, directory: str | Path) -> None:
        self.directory = Path(directory).expanduser().absolute()
        self._lock = threading.Lock()
        self._identity: tuple | None = None
        self._files: FeatureFiles | None = None
        self._labels: dict[tuple[int, int], tuple[str, str]] = {}
        self.files()

    def _index_identity(self) -> tuple:
        from ct_engine.features.files import INDEX_FILE

        try:
            stat = (self.directory / INDEX_FILE).stat()
        except OSError:
            return ()
        return stat.st_ino, stat.st_size, stat.st_mtime_ns

    def files(self) -> FeatureFiles:
        """The opened folder (reopened when its index changed); ``ValueError`` when it is not
        a features folder (any more)."""
        return self._current()[0]

    def _current(self) -> tuple[FeatureFiles, dict[tuple[int, int], tuple[str, str]]]:
        from ct_engine.features.files import FeatureFiles

        identity = self._index_identity()
        with self._lock:
            if self._files is None or identity != self._identity:
                self._files = FeatureFiles(self.directory)
                self._identity = identity
                self._labels = {}  # the labels cache of this version of the folder
            return self._files, self._labels

    def served_path(self, rel: str) -> Path | None:
        """The file ``/features/<rel>`` names, or None: only the index, the manifest and the
        bin files the index names, as regular files inside the folder (symlinks out of it
        are refused)."""
        from ct_engine.features.files import INDEX_FILE, MANIFEST_FILE

        try:
            files = self.files()
        except ValueError:
            return None
        names = {INDEX_FILE, MANIFEST_FILE, *(entry["filename"] for entry in files.index)}
        if rel not in names:
            return None
        path = self.directory / rel
        return path if is_inside(path, self.directory) else None

    def card(self, layer: int, feature: int) -> dict[str, Any]:
        """The card as :meth:`~ct_engine.features.FeatureCard.to_dict` JSON; ``NoCard`` for a
        feature outside the folder or a folder that went bad."""
        try:
            return json_safe(self.files().card(layer, feature).to_dict())
        except ValueError as err:
            raise NoCard(str(err)) from None

    def labels(self, pairs: Iterable[tuple[int, int]]) -> dict[tuple[int, int], tuple[str, str]]:
        """``{(layer, feature): (label, label_source)}`` for the pairs the folder holds (each
        record read once per folder version)."""
        files, cache = self._current()
        out = {}
        for layer, feature in pairs:
            key = (layer, feature)
            found = cache.get(key)
            if found is None:
                try:
                    card = files.card(layer, feature)
                except ValueError:
                    continue  # not in this folder (another transcoder set's feature)
                found = (card.label, card.label_source)
                cache[key] = found
            out[key] = found
        return out


class FeatureCards:
    """Where a graph's feature cards come from: the lake (lake graphs whose model has
    dashboards there) or the features folder (everything else)."""

    def __init__(self, lake=None, folder: FeatureFolder | None = None) -> None:
        self.lake = lake
        self.folder = folder

    def source(self, ref: GraphRef) -> str | None:
        """``"lake"``, ``"files"`` or None (no dashboards for this graph)."""
        if ref.source == "lake" and self.lake is not None and ref.model is not None:
            if self.lake.has_partition(_STATS_TABLE, model=ref.model):
                return "lake"
        return "files" if self.folder is not None else None

    def _missing(self, ref: GraphRef) -> str:
        if ref.source == "lake":
            return (
                f"no feature dashboards for model {ref.model!r}: materialize the "
                "feature_dashboards asset, or start the server with --features_dir DIR"
            )
        return (
            "no feature dashboards for graph files: start the server with --features_dir DIR "
            "(ct features build writes one)"
        )

    def card(self, ref: GraphRef, layer: int, feature: int) -> dict[str, Any]:
        """The card of ``(layer, feature)`` for the graph ``ref``; ``NoCard`` when none."""
        source = self.source(ref)
        if source == "lake":
            from ct_lake.features import read_card

            card = read_card(self.lake, ref.model, layer, feature)
            if card is None:
                raise NoCard(
                    f"layer {layer} feature {feature} is not in the feature dashboards of "
                    f"model {ref.model!r}"
                )
            return json_safe(card)
        if source == "files":
            return self.folder.card(layer, feature)
        raise NoCard(self._missing(ref))

    def labels(self, ref: GraphRef, pairs: set[tuple[int, int]]) -> dict[str, Any]:
        """The labels of the graph's features ``pairs``: ``{"source", "features": [{"layer",
        "feature", "label", "label_source"}], "detail"}`` (``detail``: why there are none)."""
        source = self.source(ref)
        if source == "lake":
            from ct_lake.features import labels

            every = labels(self.lake, ref.model)
            found = {pair: every[pair] for pair in pairs if pair in every}
        elif source == "files":
            try:
                found = self.folder.labels(sorted(pairs))
            except ValueError as err:
                return {"source": None, "features": [], "detail": str(err)}
        else:
            return {"source": None, "features": [], "detail": self._missing(ref)}
        features = [
            {"layer": layer, "feature": feature, "label": label, "label_source": label_source}
            for (layer, feature), (label, label_source) in sorted(found.items())
        ]
        return {"source": source, "features": features, "detail": ""}
