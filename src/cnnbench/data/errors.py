"""Dataset errors: both are :class:`cnnbench.errors.UserError` (one line, exit status 2);
the subclasses let ``cnnbench datasets`` tell a missing dataset from a damaged one."""

from cnnbench.errors import UserError


class DatasetMissingError(UserError):
    """A dataset's files are not there (and could not be downloaded)."""


class DatasetCorruptError(UserError):
    """A dataset file exists but is damaged (checksum, truncation, format); it is never used."""
