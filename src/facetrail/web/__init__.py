"""The investigator's web UI: server-rendered pages over the same core functions the CLI and REST API call."""
