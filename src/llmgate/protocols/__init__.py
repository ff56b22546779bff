"""Inbound wire formats other than OpenAI Chat Completions, translated at the server's edge.

Each protocol parses its request JSON into the canonical ``ChatRequest`` and renders the canonical
``ChatResponse`` and stream chunks back into its own shapes (``base.Inbound``); routing, policies, usage
records and the cache only ever see the canonical types. This package imports ``core`` (and the shared
vendor shapes in ``llmgate.wire``), nothing else.
"""
