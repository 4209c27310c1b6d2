"""callsd.adapters: Trio code that binds the pure core to sockets, stores and exporters."""
