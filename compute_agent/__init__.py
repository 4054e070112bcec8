"""The compute agent: one per hypervisor host, runs commands through a virt driver."""
