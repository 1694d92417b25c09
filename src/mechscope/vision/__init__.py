"""Vision circuits: feature visualization and the Circuits thread's analyses of conv nets."""
