"""Response-cache backends, one module each behind ``state.ports.ResponseCache``: ``memory`` (LRU with
TTL, the default), ``sqlite`` (persistent, written off the event loop), ``redis`` (shared by replicas)."""
