"""Jobs: everything per model × prompt, everything per model, and the census.

The profile (``$CT_PROFILE``, :mod:`ct_assets.lib.profiles`) chooses their executor: in
``local`` one process per run, so that the model and each graph load once (not once per step);
in ``team`` and ``k8s`` every step runs on a worker, with the steps' retry policy.
"""

import dagster as dg

from ct_assets.defs.partitions import model_prompt_partitions, models_partitions
from ct_assets.lib.executors import executor_for, retry_policy_for

_distributed = executor_for()
_retry = retry_policy_for()

graph_job = dg.define_asset_job(
    "graph_job",
    selection=dg.AssetSelection.groups("graphs", "interventions"),
    partitions_def=model_prompt_partitions,
    description="attribution graph, pruning, scores, interventions and viewer files",
    executor_def=_distributed or dg.in_process_executor,
    op_retry_policy=_retry,
)
model_job = dg.define_asset_job(
    "model_job",
    selection=dg.AssetSelection.groups("transcoders", "features"),
    partitions_def=models_partitions,
    description="transcoder cache, transcoder quality and feature dashboards",
    executor_def=_distributed or dg.in_process_executor,
    op_retry_policy=_retry,
)
census_job = dg.define_asset_job(
    "census_job",
    selection=dg.AssetSelection.groups("census"),
    partitions_def=models_partitions,
    executor_def=_distributed,
    op_retry_policy=_retry,
)
