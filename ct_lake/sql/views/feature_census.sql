-- per model: each feature's appearances across graphs.
-- Base view of lake table `feature_census`; partition columns (model) come from the hive path.
CREATE OR REPLACE VIEW feature_census AS
SELECT *
FROM read_parquet(
    '{lake}/feature_census/model=*/data.parquet',
    hive_partitioning = true,
    hive_types_autocast = false,
    union_by_name = true
);
