"""Data: the first stage. Reads a user's files into Records (JSONL, CSV, Parquet, HF-on-disk; every error names
file:line), splits them (given files, or seeded stratified and group-aware fractions, k folds for
cross-validation, nested stratified subsets for compare) and loads the reference text the forgetting guard
measures. It hands plain Records on to vetting; nothing here knows about tasks, models or tokenizers.
"""
