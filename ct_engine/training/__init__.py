"""Training JumpReLU transcoders (per-layer and cross-layer) on a model's MLP activations.

Pipeline: :func:`collect_activations` → :func:`train_module` → export to the engine's
:class:`~ct_engine.transcoders.Transcoders` → :func:`evaluate_on_activations` →
:func:`~ct_engine.transcoders.save_transcoders`. :func:`train_transcoders` runs it end to end;
``python -m ct_engine.training.train_transcoders`` is its command line.
"""

from .collection import ActivationData, collect_activations, tokenize_texts
from .metrics import LayerMetrics, TrainingMetrics, evaluate_on_activations
from .modules import TrainableCLT, TrainablePLT, TrainableTranscoders
from .normalization import Normalization, compute_normalization
from .train_transcoders import (
    TrainingResult,
    default_hooks,
    load_hooked_model,
    train_on_activations,
    train_transcoders,
)
from .trainer import TrainConfig, TrainedModule, TrainingHistory, train_module

__all__ = [
    "ActivationData",
    "LayerMetrics",
    "Normalization",
    "TrainConfig",
    "TrainableCLT",
    "TrainablePLT",
    "TrainableTranscoders",
    "TrainedModule",
    "TrainingHistory",
    "TrainingResult",
    "TrainingMetrics",
    "collect_activations",
    "compute_normalization",
    "default_hooks",
    "evaluate_on_activations",
    "load_hooked_model",
    "tokenize_texts",
    "train_module",
    "train_on_activations",
    "train_transcoders",
]
