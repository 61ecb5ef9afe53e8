-- every node of the graph, in adjacency order.
-- Base view of lake table `nodes`; partition columns (model, prompt) come from the hive path.
CREATE OR REPLACE VIEW nodes AS
SELECT *
FROM read_parquet(
    '{lake}/nodes/model=*/prompt=*/data.parquet',
    hive_partitioning = true,
    hive_types_autocast = false,
    union_by_name = true
);
