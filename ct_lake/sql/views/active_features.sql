-- every active transcoder feature of the prompt.
-- Base view of lake table `active_features`; partition columns (model, prompt) come from the hive path.
CREATE OR REPLACE VIEW active_features AS
SELECT *
FROM read_parquet(
    '{lake}/active_features/model=*/prompt=*/data.parquet',
    hive_partitioning = true,
    hive_types_autocast = false,
    union_by_name = true
);
