"""The toy world with feature dashboards, for the viewer's feature-card tests.

:func:`build` runs the real pipeline once, small: the embedded toy-world model, dashboards
over 3,000 corpus tokens, circuit-tracer's feature files written from them, one prompt's
attribution graph saved as a viewer JSON file and, with ``lake=True``, the same graph and the
dashboards stored in a lake through the lake's own record builders (what the
``attribution_graph`` and ``feature_dashboards`` assets store).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import yaml

PROMPT = "The capital of the country where Mosho lives is"
MODEL = "toy-world"
SLUG = "mosho"


@dataclass
class ToyFeatures:
    dashboards: object  # ct_engine.features.FeatureDashboards
    features_dir: Path  # circuit-tracer's feature files of the dashboards
    graph_dir: Path  # <SLUG>.json: the prompt's graph, pruned at 0.8 / 0.98
    config_path: Path | None = None  # a lakehouse config whose lake holds the graph and dashboards
    lake_root: Path | None = None
    lake_graph_id: str | None = None


def build(root: Path, *, lake: bool = False) -> ToyFeatures:
    from ct_engine import ReplacementModel, attribute
    from ct_engine.features import build_dashboards, toy_world_texts
    from ct_engine.features.files import write_feature_files
    from ct_engine.graph.files import create_graph_files

    model = ReplacementModel.from_pretrained(MODEL, "toy-world-plt")
    dashboards = build_dashboards(
        model, toy_world_texts(), max_tokens=3000, window=32, progress=False
    )
    features_dir = write_feature_files(dashboards, root / "features")
    graph = attribute(PROMPT, model, batch_size=64, max_n_logits=5, desired_logit_prob=0.9)
    graph_dir = root / "graphs"
    create_graph_files(graph, SLUG, graph_dir, tokenizer=model.tokenizer, scan="toy-world-plt")
    out = ToyFeatures(dashboards, features_dir, graph_dir)
    if lake:
        _store_in_lake(root, out, model, graph, dashboards)
    return out


def _store_in_lake(root: Path, out: ToyFeatures, model, graph, dashboards) -> None:
    from ct_lake import records
    from ct_lake.config import load_config
    from ct_lake.keys import prompt_key
    from ct_lake.lake import Lake
    from ct_lake.paths import GRAPH_FILE, graph_slug

    config_path = root / "ct_lakehouse.yaml"
    config_path.write_text(
        yaml.safe_dump(
            {
                "lake": "lake",
                "models": [{"name": MODEL, "model": MODEL, "transcoders": "toy-world-plt"}],
                "attribution": {"max_n_logits": 5, "desired_logit_prob": 0.9},
            }
        )
    )
    config = load_config(config_path)
    lake = Lake(config.lake)
    prompt = prompt_key(PROMPT)
    keys = {"model": MODEL, "prompt": prompt}
    scratch = root / "scratch"
    scratch.mkdir()
    graph.adjacency_matrix = graph.adjacency_matrix.to_sparse_coo().coalesce()
    graph.save(scratch / GRAPH_FILE)
    record = records.attribution_record(
        keys,
        graph,
        model.tokenizer,
        scratch / GRAPH_FILE,
        text=PROMPT,
        entry=config.model(MODEL),
        settings=config.attribution,
        backend=model.backend,
        timings={},
        peak_memory_mb=0.0,
        run_id="viewer-test",
        code_version="test",
    )
    records.store(lake, record)
    records.store(lake, records.features_record({"model": MODEL}, dashboards, scratch / "files"))
    out.config_path = config_path
    out.lake_root = Path(config.lake)
    out.lake_graph_id = graph_slug(MODEL, prompt)


def private_copy(toy: ToyFeatures, root: Path) -> ToyFeatures:
    """A private copy of what :func:`build` made (its folders copied into the new ``root``),
    so that a module can write into its lake without touching another's. The dashboards
    object is shared: it is only read."""
    import dataclasses
    import shutil

    source = toy.features_dir.parent
    shutil.copytree(source, root)

    def moved(path: Path | None) -> Path | None:
        return None if path is None else root / path.relative_to(source)

    return dataclasses.replace(
        toy,
        features_dir=moved(toy.features_dir),
        graph_dir=moved(toy.graph_dir),
        config_path=moved(toy.config_path),
        lake_root=moved(toy.lake_root),
    )
