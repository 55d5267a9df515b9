"""Churn early warning: SQL features, a calibrated gradient-boosted model, tiers, reasons, daily history."""
