"""wiredraw: plugins/proc_events."""
