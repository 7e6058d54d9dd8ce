"""Video in: people detected, tracked and turned into one record per track."""
