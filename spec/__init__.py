"""wiredraw: spec."""
