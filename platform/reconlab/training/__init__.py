"""Ray Train loops, one per model family."""
