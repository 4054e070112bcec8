"""Controllers, one module per resource: validate, call the domain layer, hand to a view."""
