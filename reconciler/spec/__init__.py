"""Manifest kinds: the pydantic models, loading YAML/JSON into them, and their JSON Schemas."""
