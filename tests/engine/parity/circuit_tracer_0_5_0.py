"""The public names of circuit-tracer 0.5.0 (its README, demo notebooks, package API and
command line) and where each lives here. ``test_parity.py`` checks every entry against the
code; ``docs/circuit-tracer-parity.md`` is rendered from this file (``render_doc``).

A signature is written as circuit-tracer declares it: ``(a, b=1, *, c=None, **kwargs)``. A
default of ``...`` means "has a default; its value is not compared". ``None`` instead of a
signature compares presence only (circuit-tracer's parameter names are not part of what users
rely on, or the name comes from TransformerLens rather than circuit-tracer).

``where`` says how a circuit-tracer user meets the name: ``README``, a demo notebook
(``attribute_demo``, ``intervention_demo``, ``attribution_targets_demo``, ``tutorial`` for
circuit_tracing_tutorial), or
``API`` (the package's public modules).
"""

from __future__ import annotations

from typing import NamedTuple

# circuit-tracer module -> the module that holds the same names here.
MODULES = {
    "circuit_tracer": "ct_engine",
    "circuit_tracer.graph": "ct_engine.graph",
    "circuit_tracer.attribution": "ct_engine.attribution",
    "circuit_tracer.attribution.targets": "ct_engine.attribution.targets",
    "circuit_tracer.transcoder": "ct_engine.transcoders",
    "circuit_tracer.transcoder.single_layer_transcoder": "ct_engine.transcoders.single_layer",
    "circuit_tracer.transcoder.cross_layer_transcoder": "ct_engine.transcoders.cross_layer",
    "circuit_tracer.utils": "ct_engine.utils",
    "circuit_tracer.utils.caching": "ct_engine.utils.caching",
    "circuit_tracer.utils.hf_utils": "ct_engine.transcoders",
    "circuit_tracer.utils.demo_utils": "ct_engine.utils.demo_utils",
    "circuit_tracer.utils.decode_url_features": "ct_engine.utils.decode_url_features",
    "circuit_tracer.frontend.local_server": "ct_viewer.local_server",
}

# circuit-tracer's program -> ours.
PROGRAM = ("circuit-tracer", "ct")


class Api(NamedTuple):
    """A Python name. ``kind``: ``class``, ``function``, ``method`` (looked up on
    the class), ``attribute`` (on the class, a dataclass field or a property) or
    ``instance`` (set on a loaded ``ReplacementModel``, checked on the tiny model)."""

    name: str
    kind: str
    where: str
    signature: str | None = None


class Flag(NamedTuple):
    """A command-line option of ``circuit-tracer <command>``: every spelling, and the default,
    requiredness and choices where circuit-tracer fixes them (``default=...``: not compared)."""

    command: str
    spellings: tuple[str, ...]
    default: object = ...
    required: bool = False
    choices: tuple[str, ...] | None = None

    @property
    def key(self) -> str:
        return f"{PROGRAM[0]} {self.command} {self.spellings[-1]}"


RM = "circuit_tracer.ReplacementModel"
# The HTML display widgets of circuit-tracer's demo notebooks.
WIDGETS = (
    "display_topk_token_predictions",
    "display_generations_comparison",
    "display_token_probs",
    "display_ablation_chart",
    "display_top_features_comparison",
    "display_attribution_config",
)
G = "circuit_tracer.graph"
FI_ARGS = (
    "inputs, interventions, constrained_layers=None, freeze_attention=True, "
    "apply_activation_function=True, sparse=False, return_activations=True"
)

API: tuple[Api, ...] = (
    # -- the package --------------------------------------------------------------------------
    Api("circuit_tracer.ReplacementModel", "class", "README"),
    Api("circuit_tracer.Graph", "class", "API"),
    Api(
        "circuit_tracer.attribute",
        "function",
        "attribute_demo",
        "(prompt, model, *, attribution_targets=None, max_n_logits=10, desired_logit_prob=0.95, "
        "batch_size=512, max_feature_nodes=None, offload=None, verbose=False, update_interval=4)",
    ),
    # -- ReplacementModel ---------------------------------------------------------------------
    Api(
        f"{RM}.from_pretrained",
        "method",
        "README",
        "(model_name, transcoder_set, backend='transformerlens', device=None, "
        "dtype=torch.float32, lazy_encoder=False, lazy_decoder=True, **kwargs)",
    ),
    Api(
        f"{RM}.from_pretrained_and_transcoders",
        "method",
        "API",
        "(model_name, transcoders, backend='transformerlens', device=None, "
        "dtype=torch.float32, **kwargs)",
    ),
    Api(f"{RM}.from_config", "method", "API", "(config, transcoders, backend='transformerlens')"),
    Api(f"{RM}.feature_intervention", "method", "intervention_demo", f"({FI_ARGS})"),
    Api(
        f"{RM}.feature_intervention_generate",
        "method",
        "intervention_demo",
        f"({FI_ARGS}, **generate_kwargs)",
    ),
    Api(
        f"{RM}.get_activations",
        "method",
        "intervention_demo",
        "(inputs, sparse=False, apply_activation_function=True)",
    ),
    Api(f"{RM}.forward", "method", "intervention_demo"),  # model(prompt)
    Api(f"{RM}.generate", "method", "intervention_demo"),
    Api(f"{RM}.zero_softcap", "method", "API", "()"),
    Api(f"{RM}.ensure_tokenized", "method", "API", "(prompt)"),
    Api(f"{RM}.to_tokens", "method", "API"),
    Api(f"{RM}.to_str_tokens", "method", "API"),
    Api(f"{RM}.to_string", "method", "API"),
    Api(f"{RM}.W_U", "attribute", "API"),
    Api(f"{RM}.feature_input_hook", "attribute", "API"),
    Api(f"{RM}.feature_output_hook", "attribute", "API"),
    Api(f"{RM}.backend", "attribute", "README"),
    Api(f"{RM}.scan", "attribute", "API"),
    Api(f"{RM}.skip_transcoder", "attribute", "API"),
    Api(f"{RM}.tokenizer", "instance", "intervention_demo"),
    Api(f"{RM}.cfg", "instance", "API"),
    Api(f"{RM}.transcoders", "instance", "API"),
    Api(f"{RM}.zero_positions", "instance", "API"),
    Api(f"{RM}.run_with_cache", "instance", "API"),
    Api(f"{RM}.run_with_hooks", "instance", "API"),
    # -- Graph --------------------------------------------------------------------------------
    Api(f"{G}.Graph", "class", "attribute_demo"),
    *(
        Api(f"{G}.Graph.{field}", "attribute", "API")
        for field in (
            "input_string",
            "input_tokens",
            "active_features",
            "activation_values",
            "selected_features",
            "logit_targets",
            "logit_probabilities",
            "vocab_size",
            "cfg",
            "scan",
            "logit_token_ids",
        )
    ),
    Api(f"{G}.Graph.adjacency_matrix", "attribute", "attribute_demo"),
    Api(f"{G}.Graph.n_pos", "attribute", "attribute_demo"),
    Api(f"{G}.Graph.logit_tokens", "attribute", "attribute_demo"),
    Api(f"{G}.Graph.to", "method", "API", "(device)"),
    Api(f"{G}.Graph.to_pt", "method", "attribute_demo", "(path)"),
    Api(f"{G}.Graph.from_pt", "method", "API", "(path, map_location='cpu')"),
    # -- pruning and scores -------------------------------------------------------------------
    Api(
        f"{G}.prune_graph",
        "function",
        "attribute_demo",
        "(graph, node_threshold=0.8, edge_threshold=0.98)",
    ),
    Api(f"{G}.PruneResult", "class", "API"),
    Api(f"{G}.PruneResult.node_mask", "attribute", "API"),
    Api(f"{G}.PruneResult.edge_mask", "attribute", "API"),
    Api(f"{G}.PruneResult.cumulative_scores", "attribute", "API"),
    Api(f"{G}.compute_graph_scores", "function", "API", "(graph)"),
    Api(f"{G}.normalize_matrix", "function", "API"),
    Api(f"{G}.compute_influence", "function", "API"),
    Api(f"{G}.compute_node_influence", "function", "API"),
    Api(f"{G}.compute_edge_influence", "function", "API"),
    Api(f"{G}.find_threshold", "function", "API"),
    Api(f"{G}.compute_partial_influences", "function", "API"),
    # -- attribution targets ------------------------------------------------------------------
    Api("circuit_tracer.attribution.targets.AttributionTargets", "class", "API"),
    Api(
        "circuit_tracer.attribution.targets.CustomTarget",
        "class",
        "attribution_targets_demo",
        "(token_str, prob, vec)",
    ),
    Api(
        "circuit_tracer.attribution.targets.LogitTarget",
        "class",
        "API",
        "(token_str, vocab_idx)",
    ),
    # -- transcoders --------------------------------------------------------------------------
    Api("circuit_tracer.transcoder.TranscoderSet", "class", "API"),
    Api("circuit_tracer.transcoder.single_layer_transcoder.SingleLayerTranscoder", "class", "API"),
    Api("circuit_tracer.transcoder.cross_layer_transcoder.CrossLayerTranscoder", "class", "API"),
    Api(
        "circuit_tracer.utils.hf_utils.load_transcoder_from_hub",
        "function",
        "API",
        "(hf_ref, device=..., dtype=..., lazy_encoder=False, lazy_decoder=True)",
    ),
    # -- utils --------------------------------------------------------------------------------
    Api(
        "circuit_tracer.utils.create_graph_files",
        "function",
        "attribute_demo",
        "(graph_or_path, slug, output_path, scan=None, node_threshold=0.8, edge_threshold=0.98)",
    ),
    Api(
        "circuit_tracer.utils.caching.save_transcoders_to_cache",
        "function",
        "README",
        "(hf_ref, cache_dir=None, sequential=True, device=..., dtype=torch.float32, "
        "delete_hf_cache=True)",
    ),
    Api(
        "circuit_tracer.utils.caching.empty_cache",
        "function",
        "README",
        "(hf_ref=None, cache_dir=None)",
    ),
    Api("circuit_tracer.utils.caching.is_cached", "function", "API", "(ref)"),
    Api("circuit_tracer.utils.caching.load_transcoders_from_cache", "function", "API"),
    Api(
        "circuit_tracer.utils.demo_utils.extract_supernode_features",
        "function",
        "tutorial",
        "(url)",
    ),
    Api("circuit_tracer.utils.demo_utils.decode_url_features", "function", "API", "(url)"),
    Api("circuit_tracer.utils.decode_url_features.decode_url_features", "function", "API", "(url)"),
    Api("circuit_tracer.utils.demo_utils.Feature", "class", "intervention_demo"),
    Api(
        "circuit_tracer.utils.demo_utils.get_top_features",
        "function",
        "attribution_targets_demo",
        "(graph, n=10)",
    ),
    Api("circuit_tracer.utils.demo_utils.get_topk", "function", "API", "(logits, tokenizer, k=5)"),
    Api(
        "circuit_tracer.utils.demo_utils.get_unembed_vecs",
        "function",
        "attribution_targets_demo",
        "(model, token_ids, backend)",
    ),
    Api(
        "circuit_tracer.utils.demo_utils.cleanup_cuda", "function", "attribution_targets_demo", "()"
    ),
    *(
        Api(f"circuit_tracer.utils.demo_utils.{name}", "function", "attribution_targets_demo")
        for name in WIDGETS
    ),
    # -- the local server ---------------------------------------------------------------------
    Api(
        "circuit_tracer.frontend.local_server.serve",
        "function",
        "attribute_demo",
        "(data_dir, frontend_dir=None, features_dir=None, port=8032)",
    ),
    Api("circuit_tracer.frontend.local_server.Server.stop", "method", "attribute_demo", "()"),
    Api("circuit_tracer.frontend.local_server.Server.get_logs", "method", "API", "()"),
)

COMMANDS = ("attribute", "start-server")

FLAGS: tuple[Flag, ...] = (
    Flag("attribute", ("-p", "--prompt"), required=True),
    Flag("attribute", ("-t", "--transcoder_set"), required=True),
    Flag("attribute", ("-m", "--model"), default=None),
    Flag("attribute", ("-o", "--graph_output_path"), default=None),
    Flag(
        "attribute",
        ("--dtype",),
        default="float32",
        choices=("float32", "bfloat16", "float16", "fp32", "bf16", "fp16"),
    ),
    Flag("attribute", ("--max_n_logits",), default=10),
    Flag("attribute", ("--desired_logit_prob",), default=0.95),
    Flag("attribute", ("--batch_size",), default=256),
    Flag("attribute", ("--offload",), default=None, choices=("cpu", "disk")),
    Flag("attribute", ("--max_feature_nodes",), default=7500),
    Flag("attribute", ("--verbose",), default=False),
    Flag("attribute", ("--lazy-encoder",), default=False),
    Flag("attribute", ("--lazy-decoder",), default=True),
    Flag(
        "attribute",
        ("--backend",),
        default="transformerlens",
        choices=("transformerlens", "nnsight"),
    ),
    Flag("attribute", ("--slug",), default=None),
    Flag("attribute", ("--graph_file_dir",), default=None),
    Flag("attribute", ("--node_threshold",), default=0.8),
    Flag("attribute", ("--edge_threshold",), default=0.98),
    Flag("attribute", ("--server",), default=False),
    Flag("attribute", ("--port",), default=8041),
    Flag("attribute", ("--features_dir",), default=None),
    Flag("start-server", ("--graph_file_dir",), required=True),
    Flag("start-server", ("--features_dir",), default=None),
    Flag("start-server", ("--port",), default=8041),
)

# What differs on purpose: (name or flag key, aspect) -> why. Aspects: ``missing`` (no such
# name here), ``param:X`` (no parameter X), ``position:X`` (X elsewhere in the positional
# order), ``default:X``, ``**kwargs`` / ``*args`` (not accepted); for flags ``spelling:S``,
# ``default``, ``required``, ``choices``. The test fails when an entry here no longer differs.
INTENTIONAL: dict[tuple[str, str], str] = {
    ("circuit_tracer.attribute", "default:batch_size"): (
        "one default for the library and `ct attribute`: circuit-tracer's command-line 256 "
        "(its library says 512); attribute() refuses a batch that cannot fit and names one "
        "that does"
    ),
    (f"{RM}.from_pretrained", "**kwargs"): (
        "circuit-tracer passes extra keywords to its backend class (HookedTransformer, "
        "LanguageModel); ours loads through TransformerBridge or nnsight itself, so an unknown "
        "keyword is a TypeError instead of being silently passed on"
    ),
    (f"{RM}.from_pretrained_and_transcoders", "**kwargs"): (
        "as from_pretrained: no backend keywords to pass on"
    ),
    (f"{RM}.from_config", "missing"): (
        "circuit-tracer builds untrained models from a config for its tests; here "
        "ct_engine.tiny.build_tiny_model writes a random model folder that from_pretrained loads"
    ),
    ("circuit_tracer.utils.hf_utils.load_transcoder_from_hub", "missing"): (
        "ct_engine.transcoders.load_transcoders(ref, device=, dtype=, lazy_encoder=, "
        "lazy_decoder=) returns the set alone (its hooks and scan are attributes of the set), "
        "not a (set, config) pair"
    ),
    ("circuit_tracer.utils.caching.load_transcoders_from_cache", "missing"): (
        "load_transcoders(ref) reads a cache entry, ours or circuit-tracer's, before the hub"
    ),
    **{
        (f"circuit_tracer.utils.demo_utils.{name}", "missing"): (
            "an HTML display widget (IPython) of circuit-tracer's notebooks; this repo's "
            "notebooks print plain tables, and `ct intervene` prints the before/after table "
            "and the continuations"
        )
        for name in WIDGETS
    },
}
