"""``wiredraw.testing``: the conformance suite every module's tests inherit (built-in or third-party)."""
