-- nonzero adjacency entries: the direct effect of source on target.
-- Base view of lake table `edges`; partition columns (model, prompt) come from the hive path.
CREATE OR REPLACE VIEW edges AS
SELECT *
FROM read_parquet(
    '{lake}/edges/model=*/prompt=*/data.parquet',
    hive_partitioning = true,
    hive_types_autocast = false,
    union_by_name = true
);
