"""The error a user can fix, which every stage prints as one line (study.stage.run_stage)."""


class StageError(RuntimeError):
    """A problem the user can fix (bad input, bad data); printed as one line, exit 1."""
