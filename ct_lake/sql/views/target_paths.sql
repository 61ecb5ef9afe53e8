-- Paths into each target logit, ranked by strength: source -> feature -> logit, and direct edges.
-- Two-step paths (hops = 2) run source -> via (a feature) -> target; direct edges source ->
-- target are one-step paths (hops = 1, via null). A two-step path's weight is the product of its
-- edge weights, edge(source -> via) * edge(via -> target), both from `edges`; a direct path's
-- weight is the edge's. path_rank ranks all paths into one target by |path_weight| (1 = top).
-- Sources are tokens, errors or features; via is always a feature (null when hops = 1).
CREATE OR REPLACE VIEW target_paths AS
WITH into_logits AS (
    SELECT e.model, e.prompt, e.target, e.source, e.weight::DOUBLE AS weight
    FROM edges AS e
    JOIN logit_targets AS t ON t.model = e.model AND t.prompt = e.prompt AND t.node = e.target
),
paths AS (
    SELECT
        o.model,
        o.prompt,
        o.target,
        2 AS hops,
        i.source,
        o.source AS via,
        i.weight::DOUBLE AS source_via_weight,
        o.weight AS via_target_weight,
        i.weight::DOUBLE * o.weight AS path_weight
    FROM into_logits AS o
    JOIN nodes AS v
        ON v.model = o.model AND v.prompt = o.prompt AND v.node = o.source
        AND v.kind = 'feature'
    JOIN edges AS i ON i.model = o.model AND i.prompt = o.prompt AND i.target = o.source
    UNION ALL
    SELECT
        model, prompt, target, 1 AS hops, source, NULL::INTEGER AS via,
        NULL::DOUBLE AS source_via_weight, NULL::DOUBLE AS via_target_weight,
        weight AS path_weight
    FROM into_logits
),
ranked AS (
    SELECT
        *,
        row_number() OVER (
            PARTITION BY model, prompt, target
            ORDER BY abs(path_weight) DESC, hops, source, via
        ) AS path_rank
    FROM paths
)
SELECT
    r.model,
    r.prompt,
    r.target,
    t.rank AS target_rank,
    t.token AS target_token,
    t.probability AS target_prob,
    r.path_rank,
    r.hops,
    r.path_weight,
    s.label AS source_label,
    v.label AS via_label,
    r.source,
    s.kind AS source_kind,
    s.layer AS source_layer,
    s.pos AS source_pos,
    s.feature AS source_feature,
    s.token AS source_token,
    r.via,
    v.layer AS via_layer,
    v.pos AS via_pos,
    v.feature AS via_feature,
    v.token AS via_token,
    r.source_via_weight,
    r.via_target_weight
FROM ranked AS r
JOIN logit_targets AS t ON t.model = r.model AND t.prompt = r.prompt AND t.node = r.target
JOIN node_labels AS s ON s.model = r.model AND s.prompt = r.prompt AND s.node = r.source
LEFT JOIN node_labels AS v ON v.model = r.model AND v.prompt = r.prompt AND v.node = r.via;
