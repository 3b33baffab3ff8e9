"""One module per portal page; each calls its app's selectors."""
