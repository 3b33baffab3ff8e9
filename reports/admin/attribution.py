"""Admin of this part of the reports app."""
