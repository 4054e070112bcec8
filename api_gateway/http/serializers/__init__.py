"""Serializers: the API's dicts (the JSON shape) written as XML or Atom."""
