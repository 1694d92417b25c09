"""Datasets: folders of images (``folders``); later procedural image worlds, text corpora and tokenizers."""
