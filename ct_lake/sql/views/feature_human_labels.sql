-- The latest human label of each transcoder feature: viewer label annotations on feature nodes.
-- A lake graph's id is <model>__<prompt> (its row of graphs gives the model) and a feature
-- node's id is <layer>_<feature>_<pos>, so a label names (model, layer, feature) whichever
-- prompt and position it was written on; the latest one wins (ties: the annotation id).
-- Labels on other nodes, and on graphs outside the lake (file__<slug>), are not feature labels.
CREATE OR REPLACE VIEW feature_human_labels AS
WITH labels AS (
    SELECT
        g.model,
        CAST(regexp_extract(a.node_ids[1], '^(\d+)_(\d+)_(\d+)$', 1) AS SMALLINT) AS layer,
        CAST(regexp_extract(a.node_ids[1], '^(\d+)_(\d+)_(\d+)$', 2) AS INTEGER) AS feature,
        a.text AS label,
        a.author,
        a.created_at,
        a.graph,
        a.node_ids[1] AS node_id,
        a.id
    FROM annotations AS a
    JOIN graphs AS g ON a.graph = g.model || '__' || g.prompt
    WHERE a.kind = 'label'
        AND len(a.node_ids) = 1
        AND regexp_full_match(a.node_ids[1], '\d+_\d+_\d+')
)
SELECT model, layer, feature, label, author, created_at, graph, node_id
FROM labels
QUALIFY row_number() OVER (
    PARTITION BY model, layer, feature ORDER BY created_at DESC, id DESC
) = 1;
