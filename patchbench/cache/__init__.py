"""Artifacts cached under ``<results>/artifacts``: trained classifiers (:mod:`.models`) and
patches (:mod:`.patches`), each keyed by the fields of the config that made it, written atomically
(a killed run leaves no half file) and reused by every later command."""
