"""GitHub: only signing in to the hub (`login.py`); GitHub is not a chat platform here."""
