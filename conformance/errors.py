"""The one exception the command line turns into a one-line message and exit status 2."""


class ConfigError(Exception):
    """A usage or configuration problem: a malformed case file, an unknown backend, a bad option."""
