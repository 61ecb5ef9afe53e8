-- node mask and cumulative influence share of the pruned graph.
-- Base view of lake table `pruned_nodes`; partition columns (model, prompt) come from the hive path.
CREATE OR REPLACE VIEW pruned_nodes AS
SELECT *
FROM read_parquet(
    '{lake}/pruned_nodes/model=*/prompt=*/data.parquet',
    hive_partitioning = true,
    hive_types_autocast = false,
    union_by_name = true
);
