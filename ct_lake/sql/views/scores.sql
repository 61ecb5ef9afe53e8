-- graph scores, latest.
-- Base view of lake table `scores`; partition columns (model, prompt) come from the hive path.
CREATE OR REPLACE VIEW scores AS
SELECT *
FROM read_parquet(
    '{lake}/scores/model=*/prompt=*/data.parquet',
    hive_partitioning = true,
    hive_types_autocast = false,
    union_by_name = true
);
