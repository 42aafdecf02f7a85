"""Operation state and the outcome stream in Redis, and the sweep that keeps both whole."""
