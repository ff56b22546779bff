"""Per-request stages around the router: who the caller is, their limits and budget, and the usage record."""
