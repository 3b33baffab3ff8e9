"""amoCRM: webhook payload formats (formats.py)."""
