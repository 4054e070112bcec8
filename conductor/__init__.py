"""The conductor: schedules servers onto hosts and applies the agents' reports to PostgreSQL."""
