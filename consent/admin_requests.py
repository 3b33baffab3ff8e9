"""Admin of data-subject requests: the queue by due date."""
