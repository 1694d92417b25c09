"""Claims of the papers that mechscope checks on its bundled models (``mechscope reproduce``)."""
