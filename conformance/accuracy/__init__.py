"""The accuracy atlas: each backend's error in ulps against the exact loss, per op, dtype and input region.

regions.py (the YAML regions) -> sampling.py (inputs per dtype, in chunks) -> reference.sweep and the
backends -> metrics.py (ulp errors, statistics) -> atlas.py (the Atlas record of records.py) ->
budget.py (pass/fail against per-region budgets) -> report.py and plots.py (with claim.py, the
document's BCEWithLogits = BCE(Sigmoid) claim). command.py is `python -m conformance accuracy`.
"""
