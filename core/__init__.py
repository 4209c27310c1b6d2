"""callsd.core: the pure, I/O-free call state machine, its event codecs and the media codecs.

Nothing in this package reads a clock, draws randomness or touches a socket; see docs/adr/0001.
"""
