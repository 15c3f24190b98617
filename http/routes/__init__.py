"""One blueprint per route family. A route parses its input and calls one service method.

Shared request readers and the services accessor are public names in ``common``; errors
become answers in ``gateway.http.errors``, never in a route.
"""
