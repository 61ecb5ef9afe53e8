-- prompt key -> prompt text.
-- Base view of lake table `prompts`; partition columns (prompt) come from the hive path.
CREATE OR REPLACE VIEW prompts AS
SELECT *
FROM read_parquet(
    '{lake}/prompts/prompt=*/data.parquet',
    hive_partitioning = true,
    hive_types_autocast = false,
    union_by_name = true
);
