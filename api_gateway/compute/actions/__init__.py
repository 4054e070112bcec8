"""The server actions (guide 2.3, 3.1, nova's os-server-start-stop): one plan each, all of one
protocol (plan.py), listed in one table (table.py) that ``POST /servers/{id}/action``
dispatches from. The plans are grouped by who carries them out: the server's host (host.py,
rebuild.py, snapshots.py), the conductor (resize.py, live_migration.py), or the database
alone (database.py)."""
