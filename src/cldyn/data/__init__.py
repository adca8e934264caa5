"""Images, pairs and dataset layouts, training banks and task labels."""
