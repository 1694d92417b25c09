"""Feature visualization by optimization, in Lucid's four parts: param, transform, objectives, render."""
