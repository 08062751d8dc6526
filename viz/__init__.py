"""wiredraw: viz."""
