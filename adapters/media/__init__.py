"""The UDP media plane: ICE-lite, DTLS-SRTP and RTP forwarding on one port."""
