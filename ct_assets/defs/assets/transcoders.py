"""Per-model assets: the transcoder set in the lake's cache format, and its quality."""

from datetime import UTC, datetime
from pathlib import Path

import dagster as dg

from ct_assets.defs.partitions import models_partitions
from ct_assets.lib.context import load_model
from ct_assets.lib.plots import markdown_image
from ct_assets.lib.resources import EngineResource, LakehouseResource
from ct_assets.lib.steps import PartitionOutcome, finish, tracking_check_spec
from ct_assets.lib.tracking import MlflowTracker
from ct_lake.lake import Lake
from ct_lake.paths import TRANSCODER_DIR, cached_transcoders

_COMMON = dict(
    partitions_def=models_partitions,
    backfill_policy=dg.BackfillPolicy.single_run(),
    group_name="transcoders",
)


def _size(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


@dg.asset(
    **_COMMON,
    kinds={"pytorch", "safetensors"},
    check_specs=[tracking_check_spec("transcoder_cache")],
)
def transcoder_cache(
    context: dg.AssetExecutionContext, lakehouse: LakehouseResource, tracker: MlflowTracker
) -> dg.MaterializeResult:
    """The model's transcoder set converted into our local cache format (safetensors and
    ``config.yaml``) under the lake, so every later step loads it locally and lazily."""
    from ct_engine.transcoders import load_transcoders, save_transcoders
    from ct_engine.transcoders.refs import parse_transcoder_ref

    config = lakehouse.config
    lake = Lake(config.lake)
    outcomes = []
    for model_key in context.partition_keys:
        entry = config.model(model_key)
        ref = parse_transcoder_ref(entry.transcoders)
        transcoders = load_transcoders(entry.transcoders, device="cpu")
        target = lake.file_path(TRANSCODER_DIR, "set", model=model_key)
        save_transcoders(transcoders, target)
        revision = ref.revision or ("local" if ref.is_local else "main")
        row = {
            "source": str(ref),
            "revision": revision,
            "path": str(target),
            "kind": "clt" if transcoders.is_cross_layer else "plt",
            "activation": transcoders.activation_name,
            "skip_connection": transcoders.skip_connection,
            "n_layers": transcoders.n_layers,
            "d_model": transcoders.d_model,
            "d_transcoder": transcoders.d_transcoder,
            "size_bytes": _size(target),
            "created_at": datetime.now(UTC),
        }
        lake.write_table("transcoder_cache", [row], model=model_key)
        facts = {
            k: row[k] for k in ("kind", "activation", "n_layers", "d_transcoder", "size_bytes")
        }
        outcomes.append(
            PartitionOutcome(
                key=model_key,
                metadata={
                    **facts,
                    "source": row["source"],
                    "revision": revision,
                    "path": dg.MetadataValue.path(str(target)),
                },
                params={"transcoders": entry.transcoders, "revision": revision, **facts},
                metrics={"size_bytes": row["size_bytes"]},
            )
        )
    return finish(context, tracker, outcomes)


@dg.asset(
    **_COMMON,
    pool="gpu",
    kinds={"pytorch", "parquet"},
    deps=["transcoder_cache"],
    check_specs=[tracking_check_spec("transcoder_quality")],
)
def transcoder_quality(
    context: dg.AssetExecutionContext,
    lakehouse: LakehouseResource,
    engine: EngineResource,
    tracker: MlflowTracker,
) -> dg.MaterializeResult:
    """Reconstruction, sparsity and fidelity of the transcoders on a token sample, per layer
    (table ``transcoder_quality``, long format) with a per-layer plot."""
    from ct_engine.metrics import DEFAULT_TEXTS, evaluate_transcoders, token_sample_from_texts
    from ct_engine.metrics.plot import plot_metrics

    config = lakehouse.config
    lake = Lake(config.lake)
    outcomes = []
    for model_key in context.partition_keys:
        entry = config.model(model_key)
        model = load_model(engine, lake, entry)
        texts = DEFAULT_TEXTS
        if entry.eval_texts:
            texts = (config.path.parent / entry.eval_texts).read_text().splitlines()
        sample = token_sample_from_texts(model, texts, n_tokens=entry.eval_tokens)
        metrics = evaluate_transcoders(model, sample, batch_size=8, progress=True)
        rows = [
            {"layer": str(r["layer"]), "metric": name, "value": float(value)}
            for r in metrics.to_rows()
            for name, value in r.items()
            if name != "layer"
        ]
        whole = {
            name: getattr(metrics, name)
            for name in ("kl_replaced", "top1_agreement", "delta_ce", "l0_total")
        }
        rows += [{"layer": "model", "metric": k, "value": float(v)} for k, v in whole.items()]
        lake.write_table("transcoder_quality", rows, model=model_key)
        picture = lake.file_path("plots", "transcoder_quality.png", model=model_key)
        plot_metrics(metrics, picture, title=f"{entry.transcoders} on {entry.model}")
        means = {f"mean_{k}": float(v) for k, v in metrics.mean.items()}
        outcomes.append(
            PartitionOutcome(
                key=model_key,
                metadata={
                    **{k: round(v, 6) for k, v in whole.items()},
                    "mean_fvu_centered": means.get("mean_fvu_centered"),
                    "mean_l0": means.get("mean_l0"),
                    "n_tokens": metrics.n_tokens,
                    "plot": dg.MetadataValue.path(str(picture)),
                    "per-layer metrics": dg.MetadataValue.md(markdown_image(picture, "metrics")),
                },
                params={
                    "transcoders": cached_transcoders(lake, model_key) or entry.transcoders,
                    "eval_tokens": metrics.n_tokens,
                },
                metrics={**whole, **means},
                artifacts=[picture],
            )
        )
    return finish(context, tracker, outcomes)
