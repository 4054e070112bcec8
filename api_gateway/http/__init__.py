"""HTTP plumbing: what every resource's request and response go through.

Middlewares (request ids, faults, authentication, rate limits, retries, metrics), content
negotiation, request bodies (JSON, and XML mapped to the JSON shape), routing with the v2 URI
forms, faults and the JSON/XML/Atom serializers. Nothing here knows what a server is.
"""
