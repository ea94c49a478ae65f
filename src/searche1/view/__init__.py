"""Looking at runs: `searche1 view` (a local web page) and `searche1 report` (markdown + PNG), both over the
read-only run API of rundir.py, so that the two show the same numbers."""
