"""circuit-tracer's ``utils.caching`` names: the converted-transcoder cache.

``save_transcoders_to_cache(hf_ref, cache_dir=...)`` converts a hub transcoder set into
circuit-tracer's lazily loadable format once; ``empty_cache`` removes one entry or the whole
cache; ``is_cached`` says whether a reference has an entry.
"""

from ct_engine.transcoders.cache import empty_cache, is_cached
from ct_engine.transcoders.loading import save_transcoders_to_cache

__all__ = ["empty_cache", "is_cached", "save_transcoders_to_cache"]
