"""Scheduling: the policy of placing servers (the SQL that applies it is shared/db/placement.py)."""
