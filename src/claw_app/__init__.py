"""The composition root: configuration, the dependency-injection container, the command line, the service lifecycle."""
