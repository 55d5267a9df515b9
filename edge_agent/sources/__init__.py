"""Signal sources behind one interface (``edge_agent.signals.Source``): recorded files, CAN, OBD-II.

Every source passes its samples through :class:`~edge_agent.sources.quality.QualityMonitor`, which drops
out-of-order and duplicate samples, blanks out-of-range values and records gaps, and reports all of it
instead of passing bad data on silently.
"""
