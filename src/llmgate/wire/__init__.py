"""Vendors' JSON, typed: the shapes an outbound adapter (``providers``) and an inbound protocol
(``protocols``) both speak, defined once. Imports nothing from llmgate: these are data definitions only.
"""
