"""csm plugin: leaky_relu (under construction)."""
