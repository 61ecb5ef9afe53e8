"""Asset, sensor and schedule definitions, one module per domain (loaded automatically)."""
