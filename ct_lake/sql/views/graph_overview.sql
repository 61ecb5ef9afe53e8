-- One row per attribution graph: prompt text, sizes, top target, scores (unpruned and pruned), time.
-- Joins `graphs` with `prompts` (prompt text) and `scores` (latest scores of the graph).
CREATE OR REPLACE VIEW graph_overview AS
SELECT
    g.model,
    g.prompt,
    p.text AS prompt_text,
    g.n_tokens,
    g.n_features,
    g.n_nodes,
    g.n_edges,
    g.n_targets,
    g.top_target,
    g.top_target_prob,
    s.replacement_score,
    s.completeness_score,
    s.pruned_replacement_score,
    s.pruned_completeness_score,
    s.error_influence_share,
    s.n_nodes_kept,
    s.n_edges_kept,
    g.total_s,
    g.peak_memory_mb,
    g.created_at
FROM graphs AS g
LEFT JOIN prompts AS p ON p.prompt = g.prompt
LEFT JOIN scores AS s ON s.model = g.model AND s.prompt = g.prompt
ORDER BY g.model, g.created_at, g.prompt;
