"""Transcoders: per-layer (PLT) and cross-layer (CLT) sparse replacements of MLP layers.

Load any supported reference or format with :func:`load_transcoders`; every set implements
the :class:`Transcoders` interface used by the replacement model and attribution.
"""

from .activations import ACTIVATION_NAMES, JumpReLU, ReLU, TopK, make_activation
from .base import Transcoders
from .cache import CACHE_ENV_VAR, cache_entry_path, cache_root, empty_cache, is_cached
from .components import AttributionComponents
from .cross_layer import CrossLayerTranscoder
from .errors import TranscoderDownloadError, TranscoderFormatError
from .formats.common import LoadOptions
from .lazy import LazyTensor
from .loading import load_directory, load_transcoders, save_transcoders_to_cache
from .refs import SHORTCUTS, TranscoderRef, parse_hf_uri, parse_transcoder_ref
from .saving import save_transcoders
from .single_layer import PerLayerTranscoder, SingleLayerTranscoder
from .transcoder_set import TranscoderSet

__all__ = [
    "ACTIVATION_NAMES",
    "CACHE_ENV_VAR",
    "SHORTCUTS",
    "AttributionComponents",
    "CrossLayerTranscoder",
    "JumpReLU",
    "LazyTensor",
    "LoadOptions",
    "PerLayerTranscoder",
    "ReLU",
    "SingleLayerTranscoder",
    "TopK",
    "TranscoderDownloadError",
    "TranscoderFormatError",
    "TranscoderRef",
    "TranscoderSet",
    "Transcoders",
    "cache_entry_path",
    "cache_root",
    "empty_cache",
    "is_cached",
    "load_directory",
    "load_transcoders",
    "make_activation",
    "parse_hf_uri",
    "parse_transcoder_ref",
    "save_transcoders",
    "save_transcoders_to_cache",
]
