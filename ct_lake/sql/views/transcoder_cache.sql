-- one row per model: the cached transcoder set.
-- Base view of lake table `transcoder_cache`; partition columns (model) come from the hive path.
CREATE OR REPLACE VIEW transcoder_cache AS
SELECT *
FROM read_parquet(
    '{lake}/transcoder_cache/model=*/data.parquet',
    hive_partitioning = true,
    hive_types_autocast = false,
    union_by_name = true
);
