"""AI building blocks of openloomi-hub."""
