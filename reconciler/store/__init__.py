"""The desired-state store: the only package that speaks SQL."""
