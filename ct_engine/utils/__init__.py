"""circuit-tracer's ``utils`` entry points under the same names.

``create_graph_files`` writes viewer graph files; ``save_transcoders_to_cache`` and
``empty_cache`` manage the converted-transcoder cache (also in ``ct_engine.utils.caching``);
``ct_engine.utils.demo_utils`` holds the notebooks' helpers (``extract_supernode_features``,
``get_top_features``, ...).
"""

from ct_engine.graph.files import create_graph_files
from ct_engine.transcoders.cache import empty_cache
from ct_engine.transcoders.loading import save_transcoders_to_cache

__all__ = ["create_graph_files", "empty_cache", "save_transcoders_to_cache"]
