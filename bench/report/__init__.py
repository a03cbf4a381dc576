"""Reporting: the claims report's renderer and parts, plots, tables and number formatting."""
