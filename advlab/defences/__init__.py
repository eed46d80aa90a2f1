"""Defences, one module per chapter."""
