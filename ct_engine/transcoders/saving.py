"""Atomic writer for our on-disk format (circuit-tracer's, with CLT skip and TopK ``k`` kept)."""

from __future__ import annotations

import shutil
import uuid
from pathlib import Path

import yaml

from ct_engine.folders import replace_folder

from .base import Transcoders
from .cross_layer import CrossLayerTranscoder
from .formats.circuit_tracer import cache_config, write_cross_layer, write_transcoder_set
from .formats.common import CONFIG_FILE
from .transcoder_set import TranscoderSet


def save_transcoders(transcoders: Transcoders, directory: str | Path) -> Path:
    """Write ``transcoders`` to ``directory`` in our format; return the directory.

    PLTs become ``layer_{i}.safetensors``, CLTs ``W_enc_{i}`` / ``W_dec_{i}.safetensors``
    (with ``W_skip_{i}`` when there is a skip connection), plus ``config.yaml`` (model kind,
    hooks, ``scan``, ``model_name``, ``activation`` / ``k``). Files are written into a fresh
    temporary folder next to ``directory``, ``config.yaml`` last, and the folder is then renamed
    into place; an existing ``directory`` is replaced only once the new one is complete.
    Weights are read one layer at a time, so lazily loaded transcoders stay cheap to convert.
    """
    directory = Path(directory).expanduser().absolute()
    for source in transcoders.lazy_sources:
        if source.path.absolute().is_relative_to(directory):
            raise ValueError(
                f"cannot overwrite {directory}: the transcoders read {source.path} lazily;"
                " load them eagerly or save elsewhere"
            )
    if directory.exists() and not directory.is_dir():
        raise FileExistsError(f"{directory} exists and is not a directory")
    directory.parent.mkdir(parents=True, exist_ok=True)
    staging = directory.parent / f".{directory.name}.tmp-{uuid.uuid4().hex}"
    staging.mkdir()
    try:
        if isinstance(transcoders, CrossLayerTranscoder):
            write_cross_layer(transcoders, staging)
        elif isinstance(transcoders, TranscoderSet):
            write_transcoder_set(transcoders, staging)
        else:
            raise TypeError(f"cannot save {type(transcoders).__name__}")
        config = yaml.safe_dump(cache_config(transcoders), sort_keys=False)
        (staging / CONFIG_FILE).write_text(config)
        replace_folder(staging, directory)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return directory
