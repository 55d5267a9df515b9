"""Upgrade intent: which customers are likely to buy another car soon, how sure, and why."""
