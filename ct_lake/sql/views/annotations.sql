-- viewer annotations: labels, supernodes and notes on a graph's nodes.
-- Base view of lake table `annotations`; the partition column (graph) comes from the hive path.
CREATE OR REPLACE VIEW annotations AS
SELECT *
FROM read_parquet(
    '{lake}/annotations/graph=*/data.parquet',
    hive_partitioning = true,
    hive_types_autocast = false,
    union_by_name = true
);
