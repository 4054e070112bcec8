"""Code every Stratus service shares: settings, database, bus, messages and the state model."""
