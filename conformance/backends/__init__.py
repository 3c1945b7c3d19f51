"""Built-in backend adapters: every module here exports `BACKENDS`, a list of adapter objects."""
