"""``python -m fxcore``: the commands; each imports only what it uses."""
