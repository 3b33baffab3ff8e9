"""Admin of scoring runs and settings: progress, recompute now, charts."""
