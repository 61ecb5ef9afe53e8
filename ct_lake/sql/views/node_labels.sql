-- Every node of every graph with a readable label and the prompt token at its position.
-- Labels: feature L<layer>#<feature> @<pos> "<token>", error L<layer> @<pos> "<token>",
-- token @<pos> "<token>", logit "<token>" p=<probability> (tokens JSON-quoted).
CREATE OR REPLACE VIEW node_labels AS
SELECT
    n.model,
    n.prompt,
    n.node,
    n.kind,
    n.layer,
    n.pos,
    n.feature,
    coalesce(n.token, g.tokens[n.pos + 1]) AS token,
    n.activation,
    n.influence,
    CASE n.kind
        WHEN 'feature' THEN printf(
            'feature L%d#%d @%d %s', n.layer, n.feature, n.pos, to_json(g.tokens[n.pos + 1])
        )
        WHEN 'error' THEN printf('error L%d @%d %s', n.layer, n.pos, to_json(g.tokens[n.pos + 1]))
        WHEN 'token' THEN printf('token @%d %s', n.pos, to_json(n.token))
        WHEN 'logit' THEN printf('logit %s p=%.3f', to_json(n.token), n.logit_prob)
        ELSE n.kind || ' ' || n.node
    END AS label
FROM nodes AS n
LEFT JOIN graphs AS g ON g.model = n.model AND g.prompt = n.prompt;
