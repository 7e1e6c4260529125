"""Names under which a study stores what it knows: read by the search loop, the results tables and reports."""

SETTINGS_ATTR = "lowformer_nas"  # study user attr holding the settings a resumed study must keep
# Trial user attrs.
HASH, MACS, PARAMS, NAMED, WORKER, OOD = "hash", "macs", "params", "named", "worker", "ood"
