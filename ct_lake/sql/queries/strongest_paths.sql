-- The strongest paths into each graph's most probable target logit (top 5 per graph).
SELECT
    model,
    prompt,
    target_token,
    target_prob,
    path_rank,
    hops,
    path_weight,
    source_label,
    via_label
FROM target_paths
WHERE target_rank = 0 AND path_rank <= 5
ORDER BY model, prompt, path_rank;
