"""Tests of bridge/: the transports."""
