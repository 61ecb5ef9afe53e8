"""The replacement model: a Hugging Face LM whose MLPs are explained by transcoders."""

from ct_engine.replacement.model import ModelLoadError, ReplacementModel

__all__ = ["ModelLoadError", "ReplacementModel"]
