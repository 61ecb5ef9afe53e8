-- ablate each top feature: predicted (adjacency) vs observed effects on targets.
-- Base view of lake table `interventions`; partition columns (model, prompt) come from the hive path.
CREATE OR REPLACE VIEW interventions AS
SELECT *
FROM read_parquet(
    '{lake}/interventions/model=*/prompt=*/data.parquet',
    hive_partitioning = true,
    hive_types_autocast = false,
    union_by_name = true
);
