"""`make bench`: the integration's figures on this machine (see bench/README.md). Dev/test only."""
