-- Transcoder features that appear in more than one graph of a model, with their influence.
-- n_graphs: graphs (prompts) containing the feature; n_nodes: its nodes (one per position);
-- prompts: those prompt keys; tokens: the prompt tokens it sits on (graphs.tokens[pos + 1]).
-- The prompt and token lists are built from distinct rows first: aggregating distinct values
-- straight into lists is several times slower over a thousand graphs.
CREATE OR REPLACE VIEW recurring_features AS
WITH feature_nodes AS (
    SELECT n.model, n.prompt, n.layer, n.feature, n.influence, t.token
    FROM nodes AS n
    LEFT JOIN (
        SELECT model, prompt, generate_subscripts(tokens, 1) - 1 AS pos, unnest(tokens) AS token
        FROM graphs
    ) AS t ON t.model = n.model AND t.prompt = n.prompt AND t.pos = n.pos
    WHERE n.kind = 'feature'
),
stats AS (
    SELECT
        model, layer, feature,
        count(DISTINCT prompt) AS n_graphs,
        count(*) AS n_nodes,
        avg(influence) AS mean_influence,
        max(influence) AS max_influence
    FROM feature_nodes
    GROUP BY model, layer, feature
    HAVING count(DISTINCT prompt) > 1
),
prompts AS (
    SELECT model, layer, feature, list(prompt ORDER BY prompt) AS prompts
    FROM (SELECT DISTINCT model, layer, feature, prompt FROM feature_nodes)
    GROUP BY model, layer, feature
),
tokens AS (
    SELECT model, layer, feature, list(token ORDER BY token) AS tokens
    FROM (SELECT DISTINCT model, layer, feature, token FROM feature_nodes WHERE token IS NOT NULL)
    GROUP BY model, layer, feature
)
SELECT s.*, p.prompts, coalesce(t.tokens, []) AS tokens
FROM stats AS s
JOIN prompts AS p USING (model, layer, feature)
LEFT JOIN tokens AS t USING (model, layer, feature)
ORDER BY s.model, s.n_graphs DESC, s.max_influence DESC;
