"""circuit-tracer's feature files: write them from feature cards, read them as its browser does.

A features folder holds:

``index.json.gz``
    gzip of a JSON array indexed by layer: ``index[layer] = {"filename": "layer_<layer>.bin",
    "offsets": [o_0, ..., o_F]}`` with ``o_0 = 0`` and ``F + 1`` offsets.
``layer_<layer>.bin``
    the records of the layer's ``F`` features back to back; feature ``f`` is the byte range
    ``offsets[f] .. offsets[f + 1]``: a 4-byte little-endian unsigned length ``n``, then ``n``
    bytes of zlib-compressed UTF-8 JSON, circuit-tracer's feature record
    (:meth:`~ct_engine.features.cards.FeatureCard.to_circuit_tracer`).
``ct_features.json``
    our manifest (model, transcoder set, corpus, token count, shape, format version); the
    circuit-tracer frontend never asks for it.

circuit-tracer's frontend fetches ``features/index.json.gz``, then ``features/<filename>`` with
``Range: bytes=<offsets[f]>-<offsets[f+1]>`` (an inclusive end: one byte more than the record,
which its parser ignores). So a folder written here is served unchanged by its local server
(``--features_dir``) and by ``ct serve --features_dir``.

Each record also carries one key the frontend does not read, ``"ct"``: what a
:class:`~ct_engine.features.cards.FeatureCard` has beyond circuit-tracer's record (label and
its source, firing count, mean activation, histogram edges, logit values, top input tokens,
each example's maximum), so :meth:`FeatureFiles.card` gives back the whole card. Floats are
written with :data:`SIGNIFICANT_DIGITS` significant digits (activations are stored as float16
anyway), and integral ones as integers, to keep the files small.

Everything here is plain Python and numpy: reading a folder needs no torch.
"""

from __future__ import annotations

import dataclasses
import gzip
import json
import math
import re
import shutil
import struct
import uuid
import zlib
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

from ct_engine.features.cards import FeatureCard
from ct_engine.folders import replace_folder

INDEX_FILE = "index.json.gz"
MANIFEST_FILE = "ct_features.json"
FORMAT = "ct-features"
FORMAT_VERSION = 1
SIGNIFICANT_DIGITS = 4
# The record key circuit-tracer's frontend does not read: the rest of a FeatureCard.
EXTRA_KEY = "ct"
# Card fields every card of a set shares: kept once in the manifest, and in a record's extras
# only when a card differs.
SHARED_FIELDS = ("n_tokens", "quantile_levels")
_LENGTH = struct.Struct("<I")
_SAFE_FILENAME = re.compile(r"[A-Za-z0-9._-]+")


def layer_filename(layer: int) -> str:
    """The bin file of ``layer`` (circuit-tracer's name)."""
    return f"layer_{layer}.bin"


# -- encoding ---------------------------------------------------------------------------------


def compact(value: Any) -> Any:
    """``value`` with every float cut to :data:`SIGNIFICANT_DIGITS` significant digits,
    integral floats as ints and non-finite floats as ``None`` (JSON has no NaN, and the
    browser's ``JSON.parse`` rejects it); lists, tuples and dicts recursively."""
    if isinstance(value, float):
        return _compact_float(value)
    if isinstance(value, dict):
        return {key: compact(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_compact_item(item) for item in value]
    return value


def _compact_item(item: Any) -> Any:
    # A record holds about a million tokens and activations per thousand features: the
    # common leaves skip the generic dispatch.
    kind = type(item)
    if kind is float:
        return _compact_float(item)
    if kind is str or kind is int:
        return item
    return compact(item)


_FLOAT_FORMAT = f"%.{SIGNIFICANT_DIGITS}g"


def _compact_float(value: float) -> float | int | None:
    if value == 0.0:
        return 0  # most of an example's activations: the fast path
    if not math.isfinite(value):
        return None
    value = float(_FLOAT_FORMAT % value)
    return int(value) if value.is_integer() and abs(value) < 2**53 else value


def _json_bytes(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode()


def encode_record(record: dict[str, Any]) -> bytes:
    """One feature's bytes in a bin file: the 4-byte little-endian length, then the zlib of
    the compact JSON of ``record``."""
    payload = zlib.compress(_json_bytes(compact(record)))
    return _LENGTH.pack(len(payload)) + payload


def decode_record(blob: bytes, where: str = "record") -> dict[str, Any]:
    """Inverse of :func:`encode_record` for exactly one record's bytes; a one-line
    ``ValueError`` naming ``where`` when they are not one."""
    if len(blob) < _LENGTH.size:
        raise ValueError(f"{where}: {len(blob)} bytes, shorter than the 4-byte length prefix")
    (length,) = _LENGTH.unpack_from(blob)
    if length != len(blob) - _LENGTH.size:
        raise ValueError(
            f"{where}: length prefix says {length} bytes, the index gives "
            f"{len(blob) - _LENGTH.size}"
        )
    try:
        record = json.loads(zlib.decompress(blob[_LENGTH.size :]).decode("utf-8"))
    except (zlib.error, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ValueError(f"{where}: not zlib-compressed JSON ({_one_line(err)})") from None
    if not isinstance(record, dict):
        raise ValueError(f"{where}: a JSON {type(record).__name__}, not a feature record")
    return record


def card_record(card: FeatureCard, shared: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """circuit-tracer's record of ``card`` plus the :data:`EXTRA_KEY` extras (before
    :func:`compact`); ``shared`` holds the :data:`SHARED_FIELDS` values kept in the manifest."""
    shared = shared or {}
    record = card.to_circuit_tracer()
    extras: dict[str, Any] = {
        "n_active": int(card.n_active),
        "act_mean": float(card.act_mean),
        "histogram_edges": [float(edge) for edge in card.histogram_edges],
        "top_logit_values": [float(value) for _, value in card.top_logits],
        "bottom_logit_values": [float(value) for _, value in card.bottom_logits],
        "top_tokens": [[token, int(count)] for token, count in card.top_tokens],
        # The examples' activations were stored as float16: their maxima, kept in float32,
        # stay right to all the digits written.
        "example_max_acts": [[float(e.max_act) for e in g.examples] for g in card.groups],
        "label": card.label,
        "label_source": card.label_source,
    }
    for name in SHARED_FIELDS:
        value = getattr(card, name)
        if name not in shared or _list_or_value(shared[name]) != _list_or_value(value):
            extras[name] = _list_or_value(value)
    record[EXTRA_KEY] = extras
    return record


def _list_or_value(value: Any) -> Any:
    return list(value) if isinstance(value, list | tuple) else value


# -- writing ----------------------------------------------------------------------------------


def write_feature_files(
    dashboards,
    out_dir: str | Path,
    *,
    progress: bool = False,
    on_card: Callable[[FeatureCard], None] | None = None,
) -> Path:
    """Write every feature of ``dashboards`` (a
    :class:`~ct_engine.features.FeatureDashboards`, ``L`` layers of ``F`` features) to
    ``out_dir`` in circuit-tracer's layout (module docstring); returns ``out_dir``.
    ``on_card`` is called with each card as it is written (cards are the costly part: a
    caller that also needs them, such as the lake's tables, gets them without making them
    twice).

    Atomic: the files go into a temporary sibling folder that then replaces ``out_dir``, so a
    reader sees the old folder or the new one, never a half-written one."""
    manifest = {
        "model": dashboards.model_name,
        "transcoder_id": dashboards.transcoder_id,
        "corpus": dashboards.corpus,
        "n_tokens": int(dashboards.n_tokens),
        "n_windows": int(dashboards.n_windows),
        "window": int(dashboards.window),
        "seconds": round(float(dashboards.seconds), 3),
    }

    def cards(layer: int) -> Iterator[FeatureCard]:
        for card in dashboards.cards(layer):
            if on_card is not None:
                on_card(card)
            yield card

    layers = {layer: cards(layer) for layer in range(dashboards.n_layers)}
    return write_cards(
        layers,
        out_dir,
        dashboards.d_transcoder,
        manifest=manifest,
        progress=progress,
    )


def write_cards(
    cards_by_layer: Mapping[int, Iterable[FeatureCard]],
    out_dir: str | Path,
    d_transcoder: int,
    *,
    manifest: Mapping[str, Any] | None = None,
    progress: bool = False,
) -> Path:
    """Write the cards of layers ``0 .. L-1`` (``cards_by_layer[layer]`` yields the layer's
    ``d_transcoder`` cards in feature order, consumed one at a time) to ``out_dir`` in
    circuit-tracer's layout, atomically; returns ``out_dir``. ``manifest`` adds entries to
    ``ct_features.json`` (model, corpus...). A ``ValueError`` when the layers or the cards are
    not complete and in order."""
    layers = sorted(cards_by_layer)
    if layers != list(range(len(layers))) or not layers:
        raise ValueError(f"feature files need layers 0..L-1, got {layers}")
    if d_transcoder < 1:
        raise ValueError(f"d_transcoder must be positive, got {d_transcoder}")
    out_dir = Path(out_dir).expanduser().absolute()
    if out_dir.exists() and not out_dir.is_dir():
        raise ValueError(f"{out_dir} exists and is not a folder")
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = out_dir.parent / f".{out_dir.name}.tmp-{uuid.uuid4().hex}"
    staging.mkdir()
    bar = _progress_bar(len(layers) * d_transcoder, progress)
    try:
        shared: dict[str, Any] = {}
        index = []
        for layer in layers:
            offsets = _write_layer(
                staging / layer_filename(layer), layer, cards_by_layer[layer], shared, bar
            )
            if len(offsets) - 1 != d_transcoder:
                raise ValueError(
                    f"layer {layer} has {len(offsets) - 1} cards, expected {d_transcoder}"
                )
            index.append({"filename": layer_filename(layer), "offsets": offsets})
        (staging / INDEX_FILE).write_bytes(gzip.compress(_json_bytes(index), mtime=0))
        info = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            **dict(manifest or {}),
            "n_layers": len(layers),
            "d_transcoder": int(d_transcoder),
            **shared,
        }
        (staging / MANIFEST_FILE).write_text(json.dumps(info, indent=1) + "\n")
        replace_folder(staging, out_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    finally:
        if bar is not None:
            bar.close()
    return out_dir


def _write_layer(
    path: Path, layer: int, cards: Iterable[FeatureCard], shared: dict[str, Any], bar
) -> list[int]:
    """Write one layer's records to ``path``; their offsets (``F + 1``, from 0)."""
    offsets = [0]
    with path.open("wb") as out:
        for feature, card in enumerate(cards):
            if (card.layer, card.feature) != (layer, feature):
                raise ValueError(
                    f"cards out of order: expected layer {layer} feature {feature}, "
                    f"got layer {card.layer} feature {card.feature}"
                )
            if not shared:
                shared.update({name: _list_or_value(getattr(card, name)) for name in SHARED_FIELDS})
            blob = encode_record(card_record(card, shared))
            out.write(blob)
            offsets.append(offsets[-1] + len(blob))
            if bar is not None:
                bar.update()
    return offsets


def _progress_bar(total: int, enabled: bool):
    if not enabled:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, desc="writing feature files", unit="feature")


# -- reading ----------------------------------------------------------------------------------


def read_index(directory: str | Path) -> list[dict[str, Any]]:
    """The parsed ``index.json.gz`` of a features folder, checked: one entry per layer with a
    plain ``filename`` and ``F + 1`` non-decreasing integer ``offsets`` starting at 0.
    A one-line ``ValueError`` naming the file otherwise."""
    directory = Path(directory)
    if not directory.is_dir():
        raise ValueError(f"features folder {directory}: no such folder")
    path = directory / INDEX_FILE
    if not path.is_file():
        raise ValueError(f"{path}: missing (not a circuit-tracer features folder)")
    try:
        index = json.loads(gzip.decompress(path.read_bytes()).decode("utf-8"))
    except (OSError, EOFError, zlib.error, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ValueError(f"{path}: not gzip-compressed JSON ({_one_line(err)})") from None
    if not isinstance(index, list) or not index:
        raise ValueError(f"{path}: expected a non-empty JSON array (one entry per layer)")
    for layer, entry in enumerate(index):
        where = f"{path}: layer {layer}"
        if not isinstance(entry, dict):
            raise ValueError(f"{where}: expected an object with filename and offsets")
        filename, offsets = entry.get("filename"), entry.get("offsets")
        if not isinstance(filename, str) or not _SAFE_FILENAME.fullmatch(filename):
            raise ValueError(f"{where}: filename {filename!r} is not a plain file name")
        if filename in (".", ".."):
            raise ValueError(f"{where}: filename {filename!r} is not a plain file name")
        if (
            not isinstance(offsets, list)
            or len(offsets) < 2
            or not all(type(o) is int for o in offsets)
        ):
            raise ValueError(f"{where}: offsets must be a list of at least 2 integers")
        if offsets[0] != 0:
            raise ValueError(f"{where}: offsets start at {offsets[0]}, not 0")
        for feature, (start, end) in enumerate(zip(offsets, offsets[1:], strict=False)):
            if end - start < _LENGTH.size:
                raise ValueError(
                    f"{where}: feature {feature} spans {end - start} bytes "
                    f"({start}..{end}), less than a record's 4-byte length prefix"
                )
    return index


def read_record(directory: str | Path, layer: int, feature: int) -> dict[str, Any]:
    """Feature ``feature`` of ``layer``'s record, read as circuit-tracer's browser does: the
    index's offsets, that byte range of the layer's bin file, the 4-byte little-endian length,
    zlib, JSON. One-line ``ValueError``s for a bad folder or an out-of-range feature."""
    return FeatureFiles(directory).record(layer, feature)


class FeatureFiles:
    """A features folder, opened for reading (its index and manifest are read once; the bin
    files' sizes are checked against the offsets).

    Attributes:
        directory: the folder.
        index: the parsed ``index.json.gz`` (:func:`read_index`).
        manifest: the parsed ``ct_features.json`` (``{}`` for a folder written by
            circuit-tracer itself).
    """

    def __init__(self, directory: str | Path) -> None:
        self.directory = Path(directory)
        self.index = read_index(self.directory)
        self.manifest = self._read_manifest()
        for layer, entry in enumerate(self.index):
            path = self.directory / entry["filename"]
            if not path.is_file():
                raise ValueError(f"{path}: missing (named by {INDEX_FILE} for layer {layer})")
            size, end = path.stat().st_size, entry["offsets"][-1]
            if size != end:
                raise ValueError(
                    f"{path}: {size} bytes, but {INDEX_FILE}'s offsets for layer {layer} "
                    f"end at {end}"
                )

    def _read_manifest(self) -> dict[str, Any]:
        path = self.directory / MANIFEST_FILE
        if not path.exists():
            return {}
        try:
            manifest = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
            raise ValueError(f"{path}: not a JSON manifest ({_one_line(err)})") from None
        if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
            raise ValueError(f"{path}: not a {FORMAT} manifest")
        version = manifest.get("format_version")
        if not isinstance(version, int) or version > FORMAT_VERSION:
            raise ValueError(
                f"{path}: format version {version!r}; this ct reads up to {FORMAT_VERSION}"
            )
        return manifest

    @property
    def n_layers(self) -> int:
        return len(self.index)

    def d_transcoder(self, layer: int) -> int:
        """Features of ``layer`` (``F``)."""
        self._check_layer(layer)
        return len(self.index[layer]["offsets"]) - 1

    @property
    def model_name(self) -> str:
        return str(self.manifest.get("model", ""))

    @property
    def transcoder_id(self) -> str:
        return str(self.manifest.get("transcoder_id", ""))

    @property
    def corpus(self) -> str:
        return str(self.manifest.get("corpus", ""))

    @property
    def n_tokens(self) -> int:
        return int(self.manifest.get("n_tokens", 0))

    def _check_layer(self, layer: int) -> None:
        if not 0 <= layer < self.n_layers:
            raise ValueError(
                f"layer {layer} is out of range: {self.directory} has layers 0..{self.n_layers - 1}"
            )

    def check_feature(self, layer: int, feature: int) -> None:
        """A one-line ``ValueError`` when ``(layer, feature)`` is not in the folder."""
        self._check_layer(layer)
        n = self.d_transcoder(layer)
        if not 0 <= feature < n:
            raise ValueError(
                f"feature {feature} is out of range: layer {layer} has features 0..{n - 1}"
            )

    def record(self, layer: int, feature: int) -> dict[str, Any]:
        """circuit-tracer's record of the feature, as stored (the ``"ct"`` extras included)."""
        self.check_feature(layer, feature)
        entry = self.index[layer]
        start, end = entry["offsets"][feature], entry["offsets"][feature + 1]
        path = self.directory / entry["filename"]
        with path.open("rb") as fh:
            fh.seek(start)
            blob = fh.read(end - start)
        return decode_record(blob, f"{path}: feature {feature} (bytes {start}..{end})")

    def card(self, layer: int, feature: int) -> FeatureCard:
        """The feature's :class:`FeatureCard`: circuit-tracer's fields from the record, the
        rest from its extras and the manifest (left empty for a folder without them)."""
        record = self.record(layer, feature)
        where = f"{self.directory / self.index[layer]['filename']}: feature {feature}"
        try:
            card = FeatureCard.from_circuit_tracer(record, layer)
        except (KeyError, TypeError, ValueError, IndexError) as err:
            raise ValueError(f"{where}: not a circuit-tracer feature record ({err!r})") from None
        if card.feature != feature:
            raise ValueError(f"{where}: the record's index is {card.feature}")
        extras = record.get(EXTRA_KEY)
        if not isinstance(extras, dict):
            return card
        try:
            return _with_extras(card, extras, self.manifest)
        except (KeyError, TypeError, ValueError) as err:
            raise ValueError(f"{where}: bad {EXTRA_KEY!r} extras ({err!r})") from None

    def cards(self, layer: int | None = None) -> Iterator[FeatureCard]:
        """Every card, layer by layer (or of one layer)."""
        layers = range(self.n_layers) if layer is None else [layer]
        for layer_ in layers:
            for feature in range(self.d_transcoder(layer_)):
                yield self.card(layer_, feature)


def _with_extras(
    card: FeatureCard, extras: Mapping[str, Any], manifest: Mapping[str, Any]
) -> FeatureCard:
    """``card`` (from a circuit-tracer record) completed with our extras."""
    shared = {name: extras.get(name, manifest.get(name)) for name in SHARED_FIELDS}
    n_tokens = int(shared["n_tokens"] or 0)
    n_active = int(extras["n_active"])

    def pairs(tokens, values, cast):
        return [(token, cast(value)) for (token, _), value in zip(tokens, values, strict=True)]

    max_acts = extras.get("example_max_acts")
    if max_acts is not None:
        if [len(acts) for acts in max_acts] != [len(g.examples) for g in card.groups]:
            raise ValueError("example_max_acts does not match the examples")
        groups = [
            dataclasses.replace(
                group,
                examples=[
                    dataclasses.replace(example, max_act=_float_or_nan(act))
                    for example, act in zip(group.examples, acts, strict=True)
                ],
            )
            for group, acts in zip(card.groups, max_acts, strict=True)
        ]
    else:
        groups = card.groups
    return dataclasses.replace(
        card,
        groups=groups,
        n_tokens=n_tokens,
        n_active=n_active,
        # Exact from the counts; the record's own frequency is rounded.
        frequency=n_active / n_tokens if n_tokens else card.frequency,
        act_mean=_float_or_nan(extras["act_mean"]),
        quantile_levels=[float(q) for q in shared["quantile_levels"] or []],
        histogram_edges=[float(edge) for edge in extras["histogram_edges"]],
        top_logits=pairs(card.top_logits, extras["top_logit_values"], _float_or_nan),
        bottom_logits=pairs(card.bottom_logits, extras["bottom_logit_values"], _float_or_nan),
        top_tokens=[(str(token), int(count)) for token, count in extras["top_tokens"]],
        label=str(extras["label"]),
        label_source=str(extras["label_source"]),
    )


def _float_or_nan(value: Any) -> float:
    return float("nan") if value is None else float(value)


def _one_line(err: BaseException) -> str:
    return " ".join(str(err).split()) or type(err).__name__


def default_features_dir(transcoders: str | Path) -> Path:
    """Where ``ct features build`` writes when not told: ``features/<name>`` under the working
    folder, ``<name>`` being a local transcoder folder's own name, or else the reference with
    every character outside ``[A-Za-z0-9._-]`` replaced by ``_`` (``owner/repo@rev`` becomes
    ``owner_repo_rev``)."""
    reference = str(transcoders).strip()
    local = Path(reference).expanduser()
    if reference and local.is_dir():
        name = local.resolve().name
    else:
        name = re.sub(r"[^A-Za-z0-9._-]+", "_", reference.removeprefix("hf://")).strip("_")
    if not name or name in (".", ".."):
        raise ValueError(f"cannot name a features folder after transcoders {reference!r}")
    return Path("features") / name
