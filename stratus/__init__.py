"""The ``stratus`` command: the one place that puts the three services together."""
