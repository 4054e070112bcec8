"""View builders: domain rows in, API dicts out (one module per resource)."""
