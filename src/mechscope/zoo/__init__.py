"""Models: the registry table, weights handling, one module per architecture, bundled organisms."""
