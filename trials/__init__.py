"""What runs in a trial: datasets, devices, training loops, losses, attacks and metric reporting."""
