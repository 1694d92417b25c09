"""Superposition: toy models, their metrics and experiments, and sparse autoencoders."""
