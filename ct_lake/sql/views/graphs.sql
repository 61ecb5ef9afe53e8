-- one row per attribution graph: sizes, top target, timings.
-- Base view of lake table `graphs`; partition columns (model, prompt) come from the hive path.
CREATE OR REPLACE VIEW graphs AS
SELECT *
FROM read_parquet(
    '{lake}/graphs/model=*/prompt=*/data.parquet',
    hive_partitioning = true,
    hive_types_autocast = false,
    union_by_name = true
);
