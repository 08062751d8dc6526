"""wiredraw: plugins/net_zeek."""
