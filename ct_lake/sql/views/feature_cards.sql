-- One row per transcoder feature of a model's dashboards: statistics, label, top logits and tokens.
-- label, label_source: a person's label from the viewer (feature_human_labels) when there is
-- one ('human'), else the dashboards' own, already the strongest of truth > explainer > auto
-- ('' when unlabelled). top_logits / bottom_logits: the tokens the feature's decoder promotes /
-- suppresses most, strongest first; they and top_tokens (the tokens it fires on most) are
-- token text without surrounding whitespace (feature_logits keeps the exact text, with the
-- leading space some tokenizers give a word), so a word matches whatever the tokenizer:
--   SELECT layer, feature, label FROM feature_cards WHERE list_contains(top_logits, 'Ludus')
--   SELECT layer, feature, frequency FROM feature_cards WHERE frequency < 0.001  -- dead ones too
CREATE OR REPLACE VIEW feature_cards AS
WITH logits AS (
    SELECT
        model,
        layer,
        feature,
        list(trim(token) ORDER BY rank) FILTER (WHERE direction = 'top') AS top_logits,
        list(trim(token) ORDER BY rank) FILTER (WHERE direction = 'bottom') AS bottom_logits,
        list(value ORDER BY rank) FILTER (WHERE direction = 'top') AS top_logit_values,
        list(value ORDER BY rank) FILTER (WHERE direction = 'bottom') AS bottom_logit_values
    FROM feature_logits
    GROUP BY model, layer, feature
)
SELECT
    s.model,
    s.layer,
    s.feature,
    CASE WHEN h.label IS NULL THEN s.label ELSE h.label END AS label,
    CASE WHEN h.label IS NULL THEN s.label_source ELSE 'human' END AS label_source,
    s.frequency,
    s.n_active,
    s.n_tokens,
    s.act_min,
    s.act_max,
    s.act_mean,
    coalesce(l.top_logits, []) AS top_logits,
    coalesce(l.bottom_logits, []) AS bottom_logits,
    coalesce(l.top_logit_values, []) AS top_logit_values,
    coalesce(l.bottom_logit_values, []) AS bottom_logit_values,
    list_transform(s.top_tokens, lambda t: trim(t)) AS top_tokens,
    s.top_token_counts,
    s.quantile_levels,
    s.quantile_values,
    s.transcoder_id,
    s.corpus,
    s.created_at,
    h.author AS label_author,
    s.label AS dashboard_label,
    s.label_source AS dashboard_label_source
FROM feature_stats AS s
LEFT JOIN logits AS l USING (model, layer, feature)
LEFT JOIN feature_human_labels AS h USING (model, layer, feature);
