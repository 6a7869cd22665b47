"""One module per dvc.yaml stage, run as `python -m stages.<stage>` from the repository root."""
