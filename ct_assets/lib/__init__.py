"""Resource classes shared by the definitions in ``ct_assets/defs/``."""
