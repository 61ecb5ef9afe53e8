-- graph scores of every materialization (append-only, one file per run).
-- Base view of lake table `score_history`; partition columns (model, prompt, run) come from the hive path.
CREATE OR REPLACE VIEW score_history AS
SELECT *
FROM read_parquet(
    '{lake}/score_history/model=*/prompt=*/run=*/data.parquet',
    hive_partitioning = true,
    hive_types_autocast = false,
    union_by_name = true
);
