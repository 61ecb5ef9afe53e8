"""Jobs: everything per model × prompt, everything per model, and the census."""

import dagster as dg

from ct_assets.defs.partitions import model_prompt_partitions, models_partitions

graph_job = dg.define_asset_job(
    "graph_job",
    selection=dg.AssetSelection.groups("graphs", "interventions"),
    partitions_def=model_prompt_partitions,
    description="attribution graph, pruning, scores, interventions and viewer files",
    # One process per run: the model and each graph load once (not once per step).
    executor_def=dg.in_process_executor,
)
model_job = dg.define_asset_job(
    "model_job",
    selection=dg.AssetSelection.groups("transcoders"),
    partitions_def=models_partitions,
    description="transcoder cache and transcoder quality",
    executor_def=dg.in_process_executor,
)
census_job = dg.define_asset_job(
    "census_job",
    selection=dg.AssetSelection.groups("census"),
    partitions_def=models_partitions,
)
