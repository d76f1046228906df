"""The folder `infermeter wrap` puts on PYTHONPATH: its sitecustomize turns on zero-code
metering (agent.auto) in every Python process started under it."""
