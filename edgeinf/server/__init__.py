"""The OpenAI-compatible HTTP server: app factory, wire types, routes, security, metrics."""
