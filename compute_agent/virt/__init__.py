"""Virt drivers: one interface (``driver.ComputeDriver``), several hypervisors."""
