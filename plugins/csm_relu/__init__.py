"""csm plugin: relu (under construction)."""
