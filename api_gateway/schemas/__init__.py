"""Request schemas (pydantic), one module per resource: the model a parsed body must make,
else 400 (bodies are read by api_gateway/http/bodies.py)."""
