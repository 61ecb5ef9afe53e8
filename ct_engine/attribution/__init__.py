"""Attribution graphs: direct effects between nodes of the local replacement model."""

from ct_engine.attribution.attribute import attribute
from ct_engine.attribution.targets import AttributionTargets, CustomTarget

__all__ = ["AttributionTargets", "CustomTarget", "attribute"]
