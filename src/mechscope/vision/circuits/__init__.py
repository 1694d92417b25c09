"""Weights and circuits: expanded weights, NMF, attribution, circuit graphs, hand-made circuits."""
