"""What the service tells its operators: log context and formats (LOGGING), and Sentry, which this
app starts once per process (web server, worker or command) when SENTRY_DSN is set."""
