-- Graphs materialized at least twice: scores of the two most recent runs and their change.
-- From `score_history` (one row per run); "latest" and "previous" are ordered by created_at.
-- *_delta = latest - previous.
CREATE OR REPLACE VIEW score_changes AS
WITH ranked AS (
    SELECT
        *,
        row_number() OVER (PARTITION BY model, prompt ORDER BY created_at DESC, run DESC)
            AS recency,
        count(*) OVER (PARTITION BY model, prompt) AS n_runs
    FROM score_history
)
SELECT
    latest.model,
    latest.prompt,
    latest.n_runs,
    previous.run AS previous_run,
    latest.run AS latest_run,
    previous.created_at AS previous_at,
    latest.created_at AS latest_at,
    previous.replacement_score AS previous_replacement,
    latest.replacement_score AS latest_replacement,
    latest.replacement_score - previous.replacement_score AS replacement_delta,
    previous.completeness_score AS previous_completeness,
    latest.completeness_score AS latest_completeness,
    latest.completeness_score - previous.completeness_score AS completeness_delta,
    latest.pruned_replacement_score - previous.pruned_replacement_score
        AS pruned_replacement_delta,
    latest.pruned_completeness_score - previous.pruned_completeness_score
        AS pruned_completeness_delta
FROM ranked AS latest
JOIN ranked AS previous
    ON previous.model = latest.model AND previous.prompt = latest.prompt
WHERE latest.recency = 1 AND previous.recency = 2
ORDER BY latest.model, latest.prompt;
