"""The service's own request middleware, in the order MIDDLEWARE runs it: request ids and the
access log, a 503 while the database is unavailable, and the Content-Security-Policy header."""
