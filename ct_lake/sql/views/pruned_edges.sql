-- edges kept by pruning.
-- Base view of lake table `pruned_edges`; partition columns (model, prompt) come from the hive path.
CREATE OR REPLACE VIEW pruned_edges AS
SELECT *
FROM read_parquet(
    '{lake}/pruned_edges/model=*/prompt=*/data.parquet',
    hive_partitioning = true,
    hive_types_autocast = false,
    union_by_name = true
);
