"""Core: tenancy, roles and permissions, audit, and the shared mechanisms every app uses."""
