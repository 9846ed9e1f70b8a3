"""What runs in a trial: datasets, training loops, losses and metric reporting."""
