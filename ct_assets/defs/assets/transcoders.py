"""Per-model assets: the transcoder set in the lake's cache format, and its quality."""

import tempfile
from collections.abc import Iterator
from pathlib import Path

import dagster as dg

from ct_assets.defs.partitions import models_partitions
from ct_assets.lib.profiles import CPU_QUEUE, GPU_QUEUE, step_tags
from ct_assets.lib.resources import EngineResource, LakehouseResource
from ct_assets.lib.steps import Result, report, tracking_check_spec
from ct_assets.lib.tracking import MlflowTracker
from ct_lake import records
from ct_lake.paths import TRANSCODER_DIR, cached_transcoders

_COMMON = dict(
    partitions_def=models_partitions,
    backfill_policy=dg.BackfillPolicy.single_run(),
    group_name="transcoders",
)


@dg.asset(
    **_COMMON,
    op_tags=step_tags(CPU_QUEUE),
    kinds={"pytorch", "safetensors"},
    check_specs=[tracking_check_spec("transcoder_cache")],
)
def transcoder_cache(
    context: dg.AssetExecutionContext, lakehouse: LakehouseResource, tracker: MlflowTracker
) -> Iterator[dg.MaterializeResult]:
    """The model's transcoder set converted into our local cache format (safetensors and
    ``config.yaml``) under the lake, so every later step loads it locally and lazily."""
    from ct_engine.transcoders import load_transcoders, save_transcoders
    from ct_engine.transcoders.refs import parse_transcoder_ref

    config, lake = lakehouse.config, lakehouse.lake
    results = []
    for model in context.partition_keys:
        entry = config.model(model)
        transcoders = load_transcoders(entry.transcoders, device="cpu")
        keys = {"model": model}
        uri = lake.file_uri(TRANSCODER_DIR, "set", **keys)
        with tempfile.TemporaryDirectory() as scratch:
            save_transcoders(transcoders, Path(scratch) / "set")
            ref = parse_transcoder_ref(entry.transcoders)
            record = records.transcoder_cache_record(
                keys, transcoders, ref, Path(scratch) / "set", uri
            )
            records.store(lake, record)
        results.append(Result(model, record))
    yield from report(context, lakehouse, tracker, results)


@dg.asset(
    **_COMMON,
    pool="gpu",
    op_tags=step_tags(GPU_QUEUE),
    kinds={"pytorch", "parquet"},
    deps=["transcoder_cache"],
    check_specs=[tracking_check_spec("transcoder_quality")],
)
def transcoder_quality(
    context: dg.AssetExecutionContext,
    lakehouse: LakehouseResource,
    engine: EngineResource,
    tracker: MlflowTracker,
) -> Iterator[dg.MaterializeResult]:
    """Reconstruction, sparsity and fidelity of the transcoders on a token sample, per layer
    (table ``transcoder_quality``, long format) with a per-layer plot."""
    from ct_engine.metrics import DEFAULT_TEXTS, evaluate_transcoders, token_sample_from_texts
    from ct_engine.metrics.plot import plot_metrics

    config, lake = lakehouse.config, lakehouse.lake
    results = []
    for model_key in context.partition_keys:
        entry = config.model(model_key)
        model = engine.model(entry, lake)
        texts = DEFAULT_TEXTS
        if entry.eval_texts:
            texts = (config.path.parent / entry.eval_texts).read_text().splitlines()
        sample = token_sample_from_texts(model, texts, n_tokens=entry.eval_tokens)
        metrics = evaluate_transcoders(model, sample, batch_size=8, progress=engine.verbose)
        evaluated = cached_transcoders(lake, model_key) or entry.transcoders
        with tempfile.TemporaryDirectory() as scratch:
            picture = Path(scratch) / "transcoder_quality.png"
            plot_metrics(metrics, picture, title=f"{entry.transcoders} on {entry.model}")
            record = records.transcoder_quality_record(
                {"model": model_key}, metrics, evaluated, picture
            )
            records.store(lake, record)
        results.append(Result(model_key, record))
    yield from report(context, lakehouse, tracker, results)
