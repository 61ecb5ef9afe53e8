"""Partitions: models and prompts are dynamic; graphs are partitioned by model × prompt."""

import dagster as dg

from ct_lake.keys import (
    MODEL_DIMENSION,
    MODELS_PARTITIONS,
    PROMPT_DIMENSION,
    PROMPTS_PARTITIONS,
)

models_partitions = dg.DynamicPartitionsDefinition(name=MODELS_PARTITIONS)
prompts_partitions = dg.DynamicPartitionsDefinition(name=PROMPTS_PARTITIONS)
model_prompt_partitions = dg.MultiPartitionsDefinition(
    {MODEL_DIMENSION: models_partitions, PROMPT_DIMENSION: prompts_partitions}
)
# A model-level asset reads every prompt partition of its model.
per_model = dg.MultiToSingleDimensionPartitionMapping(partition_dimension_name=MODEL_DIMENSION)
