-- per-layer (and 'mean' / 'model') transcoder metrics, long format.
-- Base view of lake table `transcoder_quality`; partition columns (model) come from the hive path.
CREATE OR REPLACE VIEW transcoder_quality AS
SELECT *
FROM read_parquet(
    '{lake}/transcoder_quality/model=*/data.parquet',
    hive_partitioning = true,
    hive_types_autocast = false,
    union_by_name = true
);
