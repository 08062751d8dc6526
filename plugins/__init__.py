"""wiredraw: plugins."""
