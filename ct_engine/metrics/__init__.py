"""Transcoder quality metrics: reconstruction, sparsity and replacement-model fidelity.

    from ct_engine.metrics import evaluate_transcoders, token_sample_from_texts

    sample = token_sample_from_texts(model, open("prompts.txt").read().splitlines())
    metrics = evaluate_transcoders(model, sample, batch_size=8)
    metrics.to_rows()        # one dict per layer plus a "mean" row
    metrics.kl_replaced, metrics.top1_agreement, metrics.delta_ce

Position 0 of every prompt (the BOS / leading special token) is excluded from all statistics,
as the attribution engine zeroes it, and every intervention keeps its real MLP output.
"""

from ct_engine.metrics.evaluate import evaluate_transcoders
from ct_engine.metrics.result import LAYER_METRICS, MODEL_METRICS, TranscoderMetrics
from ct_engine.metrics.sample import DEFAULT_TEXTS, default_token_sample, token_sample_from_texts

__all__ = [
    "DEFAULT_TEXTS",
    "LAYER_METRICS",
    "MODEL_METRICS",
    "TranscoderMetrics",
    "default_token_sample",
    "evaluate_transcoders",
    "token_sample_from_texts",
]
