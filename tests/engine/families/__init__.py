"""Model families: presets, tiny replicas in the hub formats, attribution on each."""
