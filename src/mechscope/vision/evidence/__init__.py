"""Dataset evidence: examples, statistics, scans, crops, receptive fields, quilts."""
