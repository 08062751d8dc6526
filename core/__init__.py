"""wiredraw: core."""
