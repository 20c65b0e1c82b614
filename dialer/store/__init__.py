"""The campaign's state: the journal (the truth), the results CSV (its readable face), the
snapshot and parse cache, the run lock, everything in one folder beside the results.

Never speaks HTTP. Imports ``leads`` (what a loaded file is) and the base modules.
"""
