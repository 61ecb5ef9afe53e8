-- Transcoder features that appear in more than one graph of a model, with their influence.
-- n_graphs: graphs (prompts) containing the feature; n_nodes: its nodes (one per position);
-- prompts: those prompt keys; tokens: the prompt tokens it sits on (graphs.tokens[pos + 1]).
CREATE OR REPLACE VIEW recurring_features AS
SELECT
    n.model,
    n.layer,
    n.feature,
    count(DISTINCT n.prompt) AS n_graphs,
    count(*) AS n_nodes,
    avg(n.influence) AS mean_influence,
    max(n.influence) AS max_influence,
    list_sort(list_distinct(list(n.prompt))) AS prompts,
    list_sort(list_distinct(list(g.tokens[n.pos + 1]))) AS tokens
FROM nodes AS n
JOIN graphs AS g ON g.model = n.model AND g.prompt = n.prompt
WHERE n.kind = 'feature'
GROUP BY n.model, n.layer, n.feature
HAVING count(DISTINCT n.prompt) > 1
ORDER BY n.model, n_graphs DESC, max_influence DESC;
