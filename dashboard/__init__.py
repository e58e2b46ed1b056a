"""The web dashboard: a Flask app on the framework's read/act API (issue 4)."""
