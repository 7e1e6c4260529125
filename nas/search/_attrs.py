"""Names under which a study stores what it knows: read by the search loop, the results tables and reports."""

SETTINGS_ATTR = "lowformer_nas"  # study user attr holding the settings a resumed study must keep
# Trial user attrs.
HASH, MACS, PARAMS, NAMED, WORKER, OOD = "hash", "macs", "params", "named", "worker", "ood"
# Per objective, in the study's order: the central value (a prediction, or a stored measurement) and the interval
# ends. The trial's own values are what the search optimised: the pessimistic ends under risk "bound".
PRED, LO, HI = "pred", "lo", "hi"
MEASURED = "measured"  # keys of the objectives whose value is a stored measurement
ROUND = "round"  # refinement round (absent: 0)
