"""Numerical engines of the model kinds."""
