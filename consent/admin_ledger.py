"""Admin of purposes, texts, the ledger, sites, recipients, notices, incidents."""
