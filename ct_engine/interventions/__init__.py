"""Feature activations, interventions and generation under interventions."""

from ct_engine.interventions.generate import feature_intervention_generate
from ct_engine.interventions.intervene import feature_intervention, get_activations
from ct_engine.interventions.spec import Intervention, resolve_interventions

__all__ = [
    "Intervention",
    "feature_intervention",
    "feature_intervention_generate",
    "get_activations",
    "resolve_interventions",
]
