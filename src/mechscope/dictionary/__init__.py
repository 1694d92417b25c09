"""Sparse dictionary learning, in the base: SAEs serve the toy models (superposition), image layers (vision
organisms) and language-model MLPs (``mlp-1l``), so no area owns them.

``sae``: the autoencoder, its training loop and recovery score; ``scores``: how good a dictionary is on a model
(L0, variance explained, loss recovered when it replaces a layer, dead / dense latents, feature density).
"""
