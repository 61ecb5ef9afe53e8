-- the attribution targets, most probable first.
-- Base view of lake table `logit_targets`; partition columns (model, prompt) come from the hive path.
CREATE OR REPLACE VIEW logit_targets AS
SELECT *
FROM read_parquet(
    '{lake}/logit_targets/model=*/prompt=*/data.parquet',
    hive_partitioning = true,
    hive_types_autocast = false,
    union_by_name = true
);
