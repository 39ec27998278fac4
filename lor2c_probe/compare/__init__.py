"""Multi-run comparisons and their summaries: recorded runs in, dataclasses of tables and text out.

Below the commands, the report and the studies (which all use it), above ``analysis`` (single-table maths) and
``record`` (runs on disk). Nothing here prints, writes files or parses options; a pair of runs that cannot be
compared raises ``CannotCompare`` (a one-line UserError) naming them.
"""
