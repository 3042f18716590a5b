"""Tests of the configuration file, its example and `bcx-poller check`."""
