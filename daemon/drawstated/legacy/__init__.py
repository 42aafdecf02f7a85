"""Adopting the Go engine's stored states: converting them, and importing them into Redis."""
