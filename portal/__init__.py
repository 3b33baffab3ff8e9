"""The client portal: server-rendered pages for client users, one view module per page."""
