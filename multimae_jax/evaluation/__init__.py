"""Retrieval metrics and evaluators."""
