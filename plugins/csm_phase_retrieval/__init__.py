"""csm plugin: phase_retrieval (under construction)."""
