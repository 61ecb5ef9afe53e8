-- Features recurring across prompts: the 20 that appear in the most graphs, most influential first.
SELECT
    model,
    layer,
    feature,
    n_graphs,
    mean_influence,
    max_influence,
    prompts,
    tokens
FROM recurring_features
ORDER BY n_graphs DESC, max_influence DESC
LIMIT 20;
