"""One module per config `kind:`, named as the kind."""
