"""Route handlers grouped by resource: auth, metrics, ops."""
