"""Request schemas (pydantic), one module per resource, and how a body becomes a model."""
