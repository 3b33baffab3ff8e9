"""Admin of segments and memberships: sizes, trends, members export, the rule form."""
