"""Transports between a game engine and the adaptive server: OSC over UDP, ZeroMQ and a TCP audio stream."""
