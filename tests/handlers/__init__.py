"""Tests of the delivery handlers, each against a real peer on loopback."""
