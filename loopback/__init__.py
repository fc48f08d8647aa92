"""Embedded stand-ins and local services for the demo and the tests.

Production code never imports this package (an import-linter contract says so).
"""
