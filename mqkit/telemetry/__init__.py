"""What mqkit tells about itself while it runs: traces so far. tracing.py decides whether
to trace (only once the application installs an OpenTelemetry TracerProvider), spans.py
makes the spans after the messaging conventions, and propagation.py carries their context
in each message's headers."""
