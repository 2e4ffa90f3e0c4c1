"""Vetting: what the data is checked for before anything trains. The PII detectors find personal data and
secrets and redact them into typed placeholders (privacy); leakage finds exact, near and n-gram duplicates
across train/validation/test (leakage); audit runs both in that order under the config's policies and writes
the counts and places (never a raw value) that become data_audit.json. It hands the vetted Records on to the
task, which encodes them.
"""
