"""``load_transcoders``: one entry point for every supported reference and on-disk format.

Dispatch, after reading ``config.yaml``:

* config with a ``transcoders:`` list (one file per layer, index = layer): each file is
  recognised by its contents — ``.npz`` → GemmaScope; safetensors with ``w_enc`` →
  GemmaScope-2 (PLT or, for ``model_kind: cross_layer_transcoder``, CLT); safetensors with
  ``W_enc`` → circuit-tracer PLT layer file.
* otherwise ``model_kind`` picks circuit-tracer's ``layer_{i}.safetensors`` (PLT) or
  ``W_enc_{i}`` / ``W_dec_{i}`` (CLT) layout, which is also our cache format.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from .base import Transcoders
from .cache import cache_entry_path, find_cache_entry, is_cached
from .errors import TranscoderFormatError
from .formats.assemble import LayerWeights, build_cross_layer, build_transcoder_set
from .formats.circuit_tracer import (
    CLT_DEC_PATTERN,
    CLT_ENC_PATTERN,
    PLT_PATTERN,
    plt_layer_files,
    read_clt_directory,
    read_plt_layer,
)
from .formats.common import (
    CLT_KIND,
    CONFIG_FILE,
    PLT_KIND,
    LoadOptions,
    check_n_layers,
    read_config,
    read_config_file,
    validate_config,
)
from .formats.gemmascope import read_gs2_cross_layer, read_gs2_layer, read_npz_layer
from .lazy import tensor_shapes
from .refs import (
    HF_SCHEME,
    TranscoderRef,
    hf_uri_file,
    hub_config,
    hub_entry,
    hub_folder,
    parse_transcoder_ref,
)
from .saving import save_transcoders


def load_transcoders(
    ref: str | Path | TranscoderRef,
    *,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
    lazy_encoder: bool = False,
    lazy_decoder: bool = True,
    d_model: int | None = None,
    n_layers: int | None = None,
    cache_dir: str | Path | None = None,
) -> Transcoders:
    """Load the transcoders named by ``ref`` (see :mod:`.refs` for the accepted forms).

    A local directory is read directly. A hub reference is read from its cache entry under
    ``cache_dir`` (see :mod:`.cache`) when there is one, else downloaded with
    ``huggingface_hub`` (which keeps its own download cache).

    Args:
        device: where to put the parameters (default CPU); lazy reads land there too.
        dtype: parameter dtype.
        lazy_encoder: leave encoders on disk and re-read them on every use. Ignored for
            GemmaScope ``.npz`` files, which are always loaded eagerly.
        lazy_decoder: leave decoders on disk and read only the rows needed (same caveat).
        d_model, n_layers: the model's dimensions; a mismatch raises
            :class:`TranscoderFormatError` naming the file and key.
        cache_dir: root of the converted-transcoder cache. A hub reference with no entry
            there is read from circuit-tracer's cache when that has one (read only).
    """
    parsed = parse_transcoder_ref(ref)
    options = LoadOptions(
        dtype=dtype,
        lazy_encoder=lazy_encoder,
        lazy_decoder=lazy_decoder,
        d_model=d_model,
        n_layers=n_layers,
    )
    entry = find_cache_entry(parsed, cache_dir)
    if entry is not None:
        transcoders = load_directory(entry, options)
        if "scan" not in transcoders.config:  # named by the reference, not the cache folder
            transcoders.scan = parsed.scan
    else:
        transcoders = _load_source(parsed, options)
    return transcoders.to(device) if device is not None else transcoders


def save_transcoders_to_cache(
    hf_ref: str | Path | TranscoderRef,
    cache_dir: str | Path | None = None,
    sequential: bool = True,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
    delete_hf_cache: bool = True,
    *,
    overwrite: bool = False,
) -> Path:
    """Load ``hf_ref`` from its source in any supported format and write its cache entry.

    Returns the entry directory. An existing complete entry is kept unless ``overwrite``.
    Weights are loaded lazily where the format allows and converted one layer at a time. A hub
    reference that circuit-tracer has cached is converted from that entry (read only), with no
    download.

    The arguments are circuit-tracer's; three of them change nothing here:

    Args:
        hf_ref: the transcoder reference (hub or local, see :mod:`.refs`).
        cache_dir: the cache root (see :mod:`.cache`).
        sequential: ignored: the conversion always reads and writes one layer at a time.
        device: ignored: weights are copied file to file on the CPU; the entry is the same
            whichever device loads it later.
        dtype: dtype of the cached weights.
        delete_hf_cache: ignored: downloads stay in the Hugging Face cache, which other
            programs share; free it with ``hf cache delete``.
        overwrite: rewrite an existing entry.
    """
    parsed = parse_transcoder_ref(hf_ref)
    entry = cache_entry_path(parsed, cache_dir)
    if is_cached(parsed, cache_dir) and not overwrite:
        return entry
    options = LoadOptions(dtype=dtype, lazy_encoder=True, lazy_decoder=True)
    found = find_cache_entry(parsed, cache_dir)
    if found is not None and found != entry:
        source = load_directory(found, options)
        if "scan" not in source.config:
            source.scan = parsed.scan
    else:
        source = _load_source(parsed, options)
    return save_transcoders(source, entry)


def load_directory(directory: str | Path, options: LoadOptions | None = None) -> Transcoders:
    """Load a local transcoder directory; ``scan`` = the config's ``scan`` or the path."""
    directory = Path(directory).expanduser()
    options = options or LoadOptions()
    config = read_config(directory)
    return _read_transcoders(
        config,
        config_file=directory / CONFIG_FILE,
        options=options,
        scan=config.get("scan", str(directory)),
        weights_dir=lambda kind: directory,
        resolve_entry=lambda entry: _local_entry(directory, entry),
    )


# ---------------------------------------------------------------------------------- internal


def _load_source(ref: TranscoderRef, options: LoadOptions) -> Transcoders:
    if ref.is_local:
        return load_directory(ref.local_path, options)
    config_file = hub_config(ref)
    config = read_config_file(config_file)
    config.update(
        repo_id=ref.repo_id, revision=ref.revision, subfolder=ref.subfolder, scan=ref.scan
    )
    patterns = {PLT_KIND: [PLT_PATTERN], CLT_KIND: [CLT_ENC_PATTERN, CLT_DEC_PATTERN]}

    def weights_dir(kind: str) -> Path:
        return hub_folder(ref, [p.format(i="*") for p in patterns[kind]])

    def resolve_entry(entry: str) -> Path:
        return hf_uri_file(entry) if entry.startswith(HF_SCHEME) else hub_entry(ref, entry)

    return _read_transcoders(
        config,
        config_file=config_file,
        options=options,
        scan=ref.scan,
        weights_dir=weights_dir,
        resolve_entry=resolve_entry,
    )


def _local_entry(directory: Path, entry: str) -> Path:
    if entry.startswith(HF_SCHEME):
        return hf_uri_file(entry)
    path = Path(entry).expanduser()
    return path if path.is_absolute() else directory / path


def _read_transcoders(
    config: dict[str, Any],
    *,
    config_file: Path,
    options: LoadOptions,
    scan: str | list[str] | None,
    weights_dir: Callable[[str], Path],
    resolve_entry: Callable[[str], Path],
) -> Transcoders:
    validate_config(config, config_file)
    kind = config["model_kind"]
    if "transcoders" in config:
        paths = _listed_files(config, config_file, options, resolve_entry)
        if kind == CLT_KIND:
            for path in paths:
                if path.suffix == ".npz" or "w_enc" not in tensor_shapes(path):
                    raise TranscoderFormatError(
                        "listed cross-layer transcoder files must be GemmaScope-2 files",
                        file=path,
                        key="w_enc",
                    )
            weights = read_gs2_cross_layer(paths, options, config_file)
            return build_cross_layer(weights, config=config, config_file=config_file, scan=scan)
        layers_key = "transcoders"
    else:
        directory = weights_dir(kind)
        if kind == CLT_KIND:
            return read_clt_directory(
                directory, config=config, config_file=config_file, options=options, scan=scan
            )
        paths = plt_layer_files(directory, options)
        layers_key = "W_enc"
    layers: list[LayerWeights] = []
    for path in paths:
        layers.append(_read_layer_file(path, options, layers[0].dims if layers else None))
    return build_transcoder_set(
        layers,
        config=config,
        config_file=config_file,
        options=options,
        scan=scan,
        layers_key=layers_key,
    )


def _listed_files(
    config: dict[str, Any],
    config_file: Path,
    options: LoadOptions,
    resolve_entry: Callable[[str], Path],
) -> list[Path]:
    entries = config["transcoders"]
    if not isinstance(entries, list) or not entries or not all(isinstance(e, str) for e in entries):
        raise TranscoderFormatError(
            "transcoders must be a non-empty list of file paths",
            file=config_file,
            key="transcoders",
        )
    check_n_layers(len(entries), options, config_file, "transcoders")
    paths = []
    for layer, entry in enumerate(entries):
        path = resolve_entry(entry)
        if not path.is_file():
            raise TranscoderFormatError(
                f"file for layer {layer} does not exist", file=path, key="transcoders"
            )
        paths.append(path)
    return paths


def _read_layer_file(
    path: Path, options: LoadOptions, expected: tuple[int, int] | None
) -> LayerWeights:
    """Read one per-layer file, recognising its format by extension and tensor keys."""
    if path.suffix == ".npz":
        return read_npz_layer(path, options, expected)
    shapes = tensor_shapes(path)
    if "W_enc" in shapes:
        return read_plt_layer(path, shapes, options, expected)
    if "w_enc" in shapes:
        return read_gs2_layer(path, shapes, options, expected)
    raise TranscoderFormatError(
        "not a transcoder layer file: no encoder tensor (W_enc or w_enc)", file=path, key="W_enc"
    )
