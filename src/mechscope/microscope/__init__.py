"""The Microscope: a browsable atlas of a model's units and heads with their evidence."""
