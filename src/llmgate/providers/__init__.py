"""Provider adapters: how to talk to each vendor (wire formats) and how to reach it (HTTP transport)."""
