"""The libvirt driver, split by concern: domain XML here, the driver's operations in driver.py."""
