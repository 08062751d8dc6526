"""wiredraw: probes."""
