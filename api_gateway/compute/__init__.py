"""The gateway's domain layer: what the compute API's requests mean.

``ComputeAPI`` (api.py) is what controllers call: reads, the writes on the server resource,
and the server actions. Every write runs as transactions.py says (lock, check, record, then a
command through shared/rpcapi.py, or undo); every server action is a plan of one protocol,
listed in one table (actions/). Images, metadata edits and quotas have modules of their own.
"""
