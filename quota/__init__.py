"""quota: emissions-quota ledger and environmental-capacity planner (the library; no terminal code)."""
__version__ = "0.1.0"
