"""csm plugin: matrix_recovery (under construction)."""
