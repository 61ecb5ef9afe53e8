-- Features whose decoder promotes the token 'Ludus' (the toy world's capital of Soubathia):
-- where it ranks among each feature's top logits, how often the feature fires, its label.
-- Change the token to ask about another word; `frequency < 0.001` finds the rare features.
SELECT
    model,
    layer,
    feature,
    list_position(top_logits, 'Ludus') AS logit_rank,
    frequency,
    label,
    label_source
FROM feature_cards
WHERE list_contains(top_logits, 'Ludus')
ORDER BY model, logit_rank, frequency DESC, layer, feature;
