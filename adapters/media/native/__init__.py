"""callsd's native forwarding step: the C extension ``_engine`` (_engine.c and its headers) and, in ``path``, the
``paths.ReceivePath`` built on it (``NativePath``) with its peer and SRTP context classes.

This package itself imports nothing: ``transport.Peer`` and the plane's ``Session`` subclass the extension's
``SendStateOwner`` (route_record.py), so ``_engine`` must import without importing ``transport`` (``path`` does).
"""
