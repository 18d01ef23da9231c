"""The worker loop of one WorkPool: sync, heartbeat, poll, claim, submit, sweep."""
