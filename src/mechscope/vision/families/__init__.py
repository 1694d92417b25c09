"""Families of units: synthetic stimuli, tuning curves, detectors, equivariance, branches, universality."""
