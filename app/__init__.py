"""callsd.app: the Quart-Trio application, the command line and configuration."""
