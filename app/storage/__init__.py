"""What is kept: the database (SQLite or PostgreSQL) and its tables, the runs' journals replayed into it, the rules
that turn stored rows into health alerts and chart history, the run's JSON view, a run's status transitions and the
files of a run folder. It imports nothing else of app/ (from trainer/ only torch-free modules: protocol, files, journal)."""
