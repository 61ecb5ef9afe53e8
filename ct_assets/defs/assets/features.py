"""Per-model feature dashboards: what every transcoder feature does, measured on a corpus."""

import tempfile
from collections.abc import Iterator
from pathlib import Path

import dagster as dg

from ct_assets.defs.partitions import models_partitions
from ct_assets.lib.profiles import GPU_QUEUE, step_tags
from ct_assets.lib.resources import EngineResource, LakehouseResource
from ct_assets.lib.steps import TRACKING_CHECK, Result, report, tracking_check_spec
from ct_assets.lib.tracking import MlflowTracker
from ct_lake import records
from ct_lake.config import resolve_explainer


@dg.asset(
    partitions_def=models_partitions,
    backfill_policy=dg.BackfillPolicy.single_run(),
    group_name="features",
    # A model without a corpus is left unmaterialized (its other assets and graphs go on).
    output_required=False,
    pool="gpu",
    op_tags=step_tags(GPU_QUEUE),
    kinds={"pytorch", "parquet"},
    deps=["transcoder_cache"],
    check_specs=[tracking_check_spec("feature_dashboards")],
)
def feature_dashboards(
    context: dg.AssetExecutionContext,
    lakehouse: LakehouseResource,
    engine: EngineResource,
    tracker: MlflowTracker,
) -> Iterator[dg.MaterializeResult | dg.AssetCheckResult]:
    """Every transcoder feature's activation statistics, example contexts, output logits and
    label, from one pass over the model's ``feature_corpus`` (tables ``feature_stats``,
    ``feature_examples``, ``feature_logits``; circuit-tracer's feature files). The view
    ``feature_cards`` answers questions about them in SQL.

    A model with no corpus (no ``feature_corpus.path``, and not the toy world, which has its
    own text) is not materialized: a warning says so, and its other assets run as usual."""
    from ct_engine.features import build_dashboards, corpus_texts
    from ct_engine.features.corpus import TOY_WORLD

    config, lake = lakehouse.config, lakehouse.lake
    results, without_corpus = [], []
    for model_key in context.partition_keys:
        entry = config.model(model_key)
        corpus = config.feature_corpus_for(model_key)
        spec = corpus.spec()
        if spec.path is None and entry.model != TOY_WORLD:
            without_corpus.append(model_key)
            context.log.warning(
                f"feature_dashboards {model_key}: not built, no corpus: set feature_corpus.path "
                "(a local .txt, .jsonl or .parquet file) in the config"
            )
            continue
        try:  # mistakes in the corpus or the explainer: one line, before the model loads
            texts = corpus_texts(spec, entry.model)
            explainer = resolve_explainer(config.feature_explainer_for(model_key))
        except ValueError as err:
            raise dg.Failure(description=f"feature_dashboards {model_key}: {err}") from None
        model = engine.model(entry, lake)
        try:
            dashboards = build_dashboards(
                model,
                texts,
                max_tokens=spec.tokens,
                corpus=spec.describe(),
                explainer=explainer,
                progress=False,
                **corpus.options(),
            )
        except ValueError as err:  # a corpus too short for one window, a bad line in it
            raise dg.Failure(description=f"feature_dashboards {model_key}: {err}") from None
        with tempfile.TemporaryDirectory() as scratch:
            record = records.features_record(
                {"model": model_key}, dashboards, Path(scratch) / "features"
            )
            records.store(lake, record)
        context.log.info(
            f"feature_dashboards {model_key}: {dashboards.n_layers} x {dashboards.d_transcoder} "
            f"features on {dashboards.n_tokens:,} tokens in {dashboards.seconds:.1f} s"
        )
        results.append(Result(model_key, record))
    if results:
        yield from report(context, lakehouse, tracker, results)
    else:
        yield dg.AssetCheckResult(
            check_name=TRACKING_CHECK,
            passed=False,
            severity=dg.AssetCheckSeverity.WARN,
            description="not materialized: no feature corpus for " + ", ".join(without_corpus),
        )
