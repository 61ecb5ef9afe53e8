-- Graphs whose replacement score changed between their two most recent runs, biggest change first.
SELECT
    c.model,
    c.prompt,
    p.text AS prompt_text,
    c.previous_replacement,
    c.latest_replacement,
    c.replacement_delta,
    c.completeness_delta,
    c.previous_at,
    c.latest_at
FROM score_changes AS c
LEFT JOIN prompts AS p ON p.prompt = c.prompt
WHERE c.replacement_delta <> 0
ORDER BY abs(c.replacement_delta) DESC;
