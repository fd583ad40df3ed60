"""Judging a fit: accuracy and recovery metrics with the quality gates, rolling-origin cross-validation, and the
stability of one refresh against the previous one.
"""
